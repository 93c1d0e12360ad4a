"""Command line for scenario files: `python -m sage_gym.scenarios {validate,import-sage,generate} ...`.

    python -m sage_gym.scenarios validate personas/train.jsonl personas/eval.jsonl --min-per-cell 10 4
    python -m sage_gym.scenarios validate train eval                # the shipped splits, by name
    python -m sage_gym.scenarios import-sage sage_profiles.jsonl personas/sage.jsonl
    python -m sage_gym.scenarios generate --n 8 --out personas/extra.jsonl --base-url ... --model ...
"""

from __future__ import annotations

import argparse
import sys

from sage_gym.scenarios.checks import format_balance, validate_sets
from sage_gym.scenarios.generator import add_generate_parser
from sage_gym.scenarios.records import ScenarioError
from sage_gym.scenarios.sets import load_scenarios, resolve_scenarios, write_scenarios


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        sets = [resolve_scenarios(source) for source in args.files]  # a split name (train, eval, ...) or a JSONL file
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    mins = args.min_per_cell or [0]
    if len(mins) == 1:
        mins = mins * len(sets)
    if len(mins) != len(sets):
        print("error: give one --min-per-cell value, or one per file", file=sys.stderr)
        return 2
    report = validate_sets(sets, mins, library=not args.schema_only)
    for scenario_set in sets:
        print(f"{scenario_set.name}: {len(scenario_set)} scenarios")
        print(format_balance(report.balance[scenario_set.name]))
        print()
    for warning in report.warnings:
        print(f"warning: {warning}")
    for error in report.errors:
        print(f"error: {error}")
    print("OK" if report.ok else f"{len(report.errors)} error(s)")
    return 0 if report.ok else 1


def cmd_import_sage(args: argparse.Namespace) -> int:
    try:
        scenarios = load_scenarios(args.source)
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_scenarios(scenarios, args.out)
    unrecognised = [(s.id, note) for s in scenarios for note in s.extras.get("unrecognised", ())]
    print(f"wrote {len(scenarios)} scenarios to {args.out}")
    for sid, note in unrecognised:
        print(f"not recognised in {sid}: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_gym.scenarios", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check files: schema, completeness, lengths, balance, duplicates, leaks")
    v.add_argument("files", nargs="+", metavar="SPLIT_OR_FILE", help="split names (train, eval, train-zh, eval-zh, probes) or JSONL files")
    v.add_argument("--min-per-cell", type=int, nargs="*", help="minimum scenarios per (intention, character) cell, one value or one per file")
    v.add_argument("--schema-only", action="store_true", help="skip the library checks (for imported SAGE files)")
    v.set_defaults(func=cmd_validate)
    i = sub.add_parser("import-sage", help="convert a SAGE-format JSONL file to this library's format")
    i.add_argument("source")
    i.add_argument("out")
    i.set_defaults(func=cmd_import_sage)
    add_generate_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)
