"""Measure a simulated user on SAGE's recorded dialogues (docs/calibration.md).

    python -m sage_gym.calibrate                          # the vendored DeepSeek-V3 judge's dialogues, built-in user
    python -m sage_gym.calibrate --judge gpt-4o           # the held-out GPT-4o judge's
    python -m sage_gym.calibrate DIR [--judge ...]        # a folder in SAGE's format (SAGE/dataset/ or one judge's folder)
    python -m sage_gym.calibrate --simulator openai --simulator-kwargs '{"base_url": "...", "model": "..."}'
    python -m sage_gym.calibrate pack DIR OUT             # rebuild the vendored copy from SAGE/dataset/
    python -m sage_gym.calibrate fit [--out DIR] [--lomo]  # refit the calibrated user on the DeepSeek-V3 judge

Every recorded reply is judged in its recorded history through the Simulator protocol, at a
neutral emotion of 40 (or `--emotion recorded`). Prints the per-model table, Kendall's tau of
the models' mean change against their SAGE scores, first-reply concordance within profiles and
per-reply Spearman, each with a bootstrap interval over profiles. Exit status 1 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from sage_gym.calibrate.data import FITTING_JUDGE, HELD_OUT_JUDGE, SageDataError, load_results, load_vendored, pack
from sage_gym.calibrate.measure import NEUTRAL_EMOTION, RECORDED, Measurement, measure


def _emotion(text: str) -> int | str:
    if text == RECORDED:
        return RECORDED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 100] or {RECORDED!r}, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 100] or {RECORDED!r}, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.1f}"


def format_measurement(result: Measurement) -> str:
    """The per-model table and the three figures, as Markdown."""
    turns = max((len(row.our_by_turn) for row in result.models), default=0)
    header = "| model | SAGE score | ours per reply | recorded per reply | " + " | ".join(f"t{k}" for k in range(1, turns + 1)) + " |"
    lines = [
        f"judge {result.judge}, simulator {result.simulator}, emotion before each reply: {result.emotion}; "
        f"{result.profiles} profiles, {result.dialogues} dialogues, {result.replies} replies judged, {result.errors} failed",
        "",
        "Mean change per reply, ours by turn (t1, t2, ...) and recorded by turn below it:",
        "",
        header,
        "|---" * (4 + turns) + "|",
    ]
    for row in result.models:
        lines.append(f"| {row.model} | {row.sage_score:.1f} | {_signed(row.our_change)} | {_signed(row.recorded_change)} | " + " | ".join(_signed(v) for v in row.our_by_turn) + " |")
        lines.append("| (recorded) | | | | " + " | ".join(_signed(v) for v in row.recorded_by_turn) + " |")
    lines += [
        "",
        f"Kendall tau, models' mean change vs SAGE score ({len(result.models)} models): {result.kendall_tau}",
        f"First-reply concordance within profiles (ties in ours count half; chance 0.5): {result.first_reply_concordance}",
        f"Per-reply Spearman, our vs recorded change: {result.spearman}",
        f"(95% intervals: {result.bootstrap} bootstrap resamples of the profiles)",
    ]
    return "\n".join(lines)


def cmd_pack(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_gym.calibrate pack", description="Write the compact copy of SAGE's dataset folder DIR into OUT.")
    parser.add_argument("dir", help="SAGE's dataset folder (holding <judge>_based_simulator/ folders)")
    parser.add_argument("out", help="the folder to write (sage_gym/calibrate/data to rebuild the vendored copy)")
    args = parser.parse_args(argv)
    try:
        sizes = pack(args.dir, args.out)
    except SageDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, size in sizes.items():
        print(f"wrote {Path(args.out) / name}: {size / 1e6:.2f} MB")
    print(f"total {sum(sizes.values()) / 1e6:.2f} MB")
    return 0


def cmd_fit(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sage_gym.calibrate fit",
        description="Fit the calibrated built-in user (builtin-v1) on the vendored DeepSeek-V3 judge's dialogues and write its files.",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "simulators" / "data"), help="where to write reply_value.json.gz and builtin_v1.json (default: the package's)")
    parser.add_argument("--lomo", action="store_true", help="first print the leave-one-model-out figures (refits without each model in turn)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    from sage_gym.calibrate import fit
    from sage_gym.calibrate.measure import summarize

    dialogues = load_vendored()  # the fitting judge only: the held-out judge is never read here
    items = fit.examples(dialogues)
    if args.lomo:
        changes = iter(fit.leave_one_model_out(items))
        per_dialogue = [[next(changes) for _ in d.turns] for d in dialogues]
        print(format_measurement(summarize(dialogues, per_dialogue, bootstrap=args.bootstrap, simulator="builtin-v1, leave one model out")))
    for path in fit.write(fit.fit(items), Path(args.out)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pack"]:
        return cmd_pack(argv[1:])
    if argv[:1] == ["fit"]:
        return cmd_fit(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m sage_gym.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", help="a folder in SAGE's format; without it, the copy that ships in the package")
    parser.add_argument("--judge", help=f"{FITTING_JUDGE} (default: the fitting data) or {HELD_OUT_JUDGE} (held out: report, never fit)")
    parser.add_argument("--simulator", default="builtin", help="the simulated user, as gym.make('SageDialogue-v0', simulator=...) takes it (default builtin)")
    parser.add_argument("--simulator-kwargs", type=json.loads, default={}, help='JSON keyword arguments of the simulator, e.g. \'{"base_url": "...", "model": "..."}\'')
    parser.add_argument("--emotion", type=_emotion, default=NEUTRAL_EMOTION, help=f"the user's emotion before each reply: an integer (default {NEUTRAL_EMOTION}) or {RECORDED}")
    parser.add_argument("--bootstrap", type=_positive, default=1000, help="bootstrap resamples of the profiles (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    parser.add_argument("--limit", type=_positive, help="only the first N profiles (sorted by id), every model's dialogue of each")
    parser.add_argument("--concurrency", type=_positive, default=16, help="dialogues in flight at once (an LLM simulator's parallel calls; default 16)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        if args.dir is None:
            dialogues = load_vendored(judge=args.judge or FITTING_JUDGE)
        else:
            dialogues = load_results(args.dir, judge=args.judge)
        if args.limit:
            kept = set(sorted({d.profile_id for d in dialogues})[: args.limit])
            dialogues = [d for d in dialogues if d.profile_id in kept]
        if not dialogues:
            raise SageDataError(f"{args.dir or 'the vendored copy'}: no dialogues")
        result = measure(
            dialogues, args.simulator, args.simulator_kwargs, emotion=args.emotion, bootstrap=args.bootstrap, seed=args.seed,
            concurrency=args.concurrency, progress=not args.quiet,
        )
    except (SageDataError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_measurement(result))
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
