"""Grow the scenario library with any OpenAI-compatible model.

    python -m sage_gym.scenarios generate --n 24 --out personas/extra.jsonl \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-72B-Instruct

Each round asks for one scenario in the thinnest (intention, character type) cell of the balance
table, counting the reference files (the shipped library by default) and what `--out` already
holds. Every answer is validated (schema, completeness, leaks of the hidden intention, the cell
asked for) and compared with everything known for exact and near duplicates; rejects are counted
and another attempt is made, up to a bounded budget. Accepted scenarios are appended to `--out`
one whole line at a time, so an interrupted run resumes where it stopped: `--n` is the total to
reach in `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sage_gym.prompts import PromptLibrary, default_prompts
from sage_gym.scenarios.checks import balance_table, check_completeness, check_leaks, find_duplicates
from sage_gym.scenarios.records import CHARACTER_TYPES, HIDDEN_INTENTIONS, INTENTION_TEXT, Scenario, ScenarioError
from sage_gym.scenarios.sets import load_scenarios, load_split
from sage_gym.simulators.base import SimulatorError
from sage_gym.simulators.parsing import ParseError, read_fields
from sage_gym.transcripts import append_jsonl

DOMAINS = (
    "work", "family", "partner", "friendship", "school", "health", "money", "grief", "identity", "caregiving",
    "migration", "housing", "parenting", "neighbours", "community", "sport", "creative work", "retirement",
)
CHARACTER_DESCRIPTIONS = {
    "negative": "pessimistic, irritable, cynical, hard to please, quick to take offence",
    "passive": "low energy, short answers, goes along, hard to draw out, self-doubting",
    "avoidant": "deflects, minimises, changes the subject, uneasy with closeness and pushy questions",
}
TOP_LEVEL_KEYS = (
    "id", "persona", "background", "character_type", "character_traits", "hidden_intention", "first_message", "domain", "language",
)
AVOID_SITUATIONS = 40  # first messages of the same cell shown to the model as "differ from these"


@dataclass
class GenerationReport:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed_calls: int = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def thinnest_cell(counts: dict[tuple[str, str], int], rng: np.random.Generator) -> tuple[str, str]:
    """The (intention, character) cell with the fewest scenarios; ties broken by the rng."""
    cells = [(i, c) for i in HIDDEN_INTENTIONS for c in CHARACTER_TYPES]
    fewest = min(counts.get(cell, 0) for cell in cells)
    candidates = [cell for cell in cells if counts.get(cell, 0) == fewest]
    return candidates[int(rng.integers(len(candidates)))]


def writer_request(scenario_id: str, cell: tuple[str, str], domain: str, known: Sequence[Scenario]) -> dict[str, Any]:
    intention, character = cell
    same_cell = [s.first_message for s in known if (s.hidden_intention, s.character_type) == cell][-AVOID_SITUATIONS:]
    return {
        "id": scenario_id,
        "hidden_intention": intention,
        "intention_text": INTENTION_TEXT[intention],
        "character_type": character,
        "character_description": CHARACTER_DESCRIPTIONS[character],
        "domain": domain,
        "avoid_names": sorted({s.persona.name for s in known}),
        "avoid_first_messages": same_cell,
    }


def writer_messages(prompts: PromptLibrary, request: dict[str, Any], example: Scenario) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompts.render("scenario_writer.j2", request=request, example=example.to_dict())}]


def parse_scenario_answer(text: str) -> dict[str, Any]:
    """The scenario JSON object of an answer (prose and code fences around it are fine)."""
    return read_fields(text, TOP_LEVEL_KEYS, required=("persona", "background", "first_message"))


def check_candidate(record: dict[str, Any], request: dict[str, Any], known: Sequence[Scenario]) -> tuple[Scenario | None, str]:
    """(scenario, "") when the answer is valid and new, else (None, the reason it was rejected)."""
    record = {**record, "id": request["id"], "language": record.get("language") or "en"}
    try:
        scenario = Scenario.from_dict(record, where=f"generated {request['id']}")
    except ScenarioError as err:
        return None, f"schema: {err}"
    if (scenario.hidden_intention, scenario.character_type) != (request["hidden_intention"], request["character_type"]):
        return None, "wrong cell"
    problems = check_completeness(scenario, scenario.id) + check_leaks(scenario, scenario.id)
    if problems:
        return None, "incomplete: " + problems[0].split(": ", 1)[1]
    labelled = [("known", s) for s in known] + [("candidate", scenario)]
    duplicates = [p for p in find_duplicates(labelled) if p.startswith("candidate") or "of candidate" in p]
    if duplicates:
        return None, "duplicate: " + duplicates[0].split(": ", 1)[1].split(" of ")[0]
    return scenario, ""


async def generate(
    simulator: Any,
    out: Path,
    n: int,
    reference: Sequence[Scenario],
    *,
    seed: int = 0,
    id_prefix: str = "gen",
    domains: Sequence[str] = DOMAINS,
    max_attempts_per_scenario: int = 5,
    prompts: PromptLibrary | None = None,
    progress: bool = True,
) -> GenerationReport:
    """Append scenarios to `out` until it holds `n` (resumable); see the module docstring."""
    prompts = prompts or default_prompts()
    existing = list(load_scenarios(out)) if out.exists() and out.stat().st_size else []
    known = list(reference) + existing
    rng = np.random.default_rng([seed, len(existing)])  # a resumed run does not replay the same requests
    report = GenerationReport()
    bar = tqdm(total=n, initial=min(len(existing), n), desc="scenarios", disable=not progress)
    attempts_left = max_attempts_per_scenario * max(0, n - len(existing))
    while len(existing) < n:
        if attempts_left <= 0:
            bar.close()
            raise SimulatorError(
                f"scenario generation gave up after {max_attempts_per_scenario} attempts per scenario "
                f"({len(existing)} of {n} written to {out}); rejections: {report.rejected}, failed calls: {report.failed_calls}"
            )
        attempts_left -= 1
        counts = balance_table(known)
        cell = thinnest_cell(dict(counts), rng)
        examples = [s for s in reference if (s.hidden_intention, s.character_type) == cell] or list(reference)
        example = examples[int(rng.integers(len(examples)))]
        request = writer_request(f"{id_prefix}-{len(existing) + 1:04d}", cell, domains[int(rng.integers(len(domains)))], known)
        try:
            record = await simulator.complete(
                "scenario", lambda mode, request=request, example=example: writer_messages(prompts, request, example), parse_scenario_answer, seed=int(rng.integers(2**31 - 1))
            )
        except ParseError:
            report.failed_calls += 1
            continue
        except SimulatorError:
            report.failed_calls += 1
            raise
        scenario, reason = check_candidate(record, request, known)
        if scenario is None:
            report.reject(reason)
            continue
        append_jsonl(out, scenario.to_dict())
        existing.append(scenario)
        known.append(scenario)
        report.accepted += 1
        bar.update(1)
    bar.close()
    return report


# ----------------------------------------------------------------------------------------------
# command line


def add_generate_parser(sub: Any) -> None:
    g = sub.add_parser("generate", help="write new scenarios with an OpenAI-compatible model, filling the thinnest cells")
    g.add_argument("--n", type=int, required=True, help="total number of scenarios to reach in --out")
    g.add_argument("--out", required=True, help="JSONL file to append to (resumable)")
    g.add_argument("--against", nargs="*", default=None, help="files counted for balance and duplicates (default: the shipped train and eval)")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: $SAGE_SIMULATOR_BASE_URL or $OPENAI_BASE_URL)")
    g.add_argument("--model", default=None, help="model name (default: $SAGE_SIMULATOR_MODEL)")
    g.add_argument("--api-key", default=None, help="API key (default: $SAGE_SIMULATOR_API_KEY or $OPENAI_API_KEY)")
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--max-tokens", type=int, default=2048)
    g.add_argument("--timeout", type=float, default=120.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--id-prefix", default="gen")
    g.add_argument("--max-attempts", type=int, default=5, help="attempts per scenario before giving up")
    g.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from sage_gym.simulators.openai_sim import OpenAISimulator

    reference = (
        [s for path in args.against for s in load_scenarios(path)] if args.against is not None else [*load_split("train"), *load_split("eval")]
    )
    client = OpenAISimulator(
        model=args.model, base_url=args.base_url, api_key=args.api_key, temperature=args.temperature, max_tokens=args.max_tokens, timeout=args.timeout
    )
    try:
        report = asyncio.run(
            generate(client, Path(args.out), args.n, reference, seed=args.seed, id_prefix=args.id_prefix, max_attempts_per_scenario=args.max_attempts)
        )
    except SimulatorError as err:
        print(f"error: {err}")
        return 1
    print(json.dumps({"accepted": report.accepted, "rejected": report.rejected, "failed_calls": report.failed_calls}))
    return 0
