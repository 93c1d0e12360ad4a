"""The standing adversary: a search attack on the built-in simulated user, as a learner would make it.

Hill climbing over fragments of the reference agents' replies and of neutral sentences
(`agents.eval.search_attack`), fitness = the simulated user's mean final emotion on a fixed part of
the eval split (one seed per user); the best policy is then scored on held-out seeds, on the users
it was fitted on and on the others, beside the reference empathic agent on the same dialogues.
Prints the search's trajectory (evaluations -> best fitness), the held-out scores, the time per
evaluation and the best policy's first three turns with a held-out user.

    python benchmarks/search_attack.py                                   # 1,000 evaluations, English
    python benchmarks/search_attack.py --language zh --users 12
    python benchmarks/search_attack.py --simulator builtin-v1            # any simulator name make_simulator knows

A user that judges meaning keeps the attack at least 15 points below the reference empathic agent
on held-out seeds; against a user that pays for the surface, the same search climbs past it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agents.eval.search_attack import SPLITS, example_dialogue, held_out_report, hill_climb

CHECKPOINTS = (10, 30, 100, 300, 700, 1000, 2000, 5000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=1000, help="fitness evaluations the search may spend (default 1000)")
    parser.add_argument("--language", choices=sorted(SPLITS), default="en", help="en plays the eval split, zh eval-zh")
    parser.add_argument("--users", type=int, help="users of the split the fitness is measured on (default: 24 for en, 12 for zh)")
    parser.add_argument("--seed", type=int, default=0, help="the search's random seed")
    parser.add_argument("--simulator", default="builtin", help="the simulated user, a name make_simulator knows (default builtin)")
    parser.add_argument("--trials", type=int, default=3, help="held-out seeds per user (default 3)")
    parser.add_argument("--json", type=Path, help="also write the trajectory, the held-out scores and the best policy here")
    args = parser.parse_args(argv)
    users = args.users or (24 if args.language == "en" else 12)

    started = time.perf_counter()
    print(f"search attack: {args.evaluations} evaluations, {SPLITS[args.language]} ({users} users x 1 seed), simulator {args.simulator!r}, seed {args.seed}")
    try:
        result = hill_climb(args.language, args.evaluations, users, args.seed, args.simulator)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"time per evaluation: {result.seconds_per_evaluation * 1000:.0f} ms ({users} dialogues)")
    print("\n| evaluations | best fitness |\n|---:|---:|")
    for n in (*[c for c in CHECKPOINTS if c < args.evaluations], args.evaluations):
        print(f"| {n} | {result.best_at(n):.1f} |")

    report = held_out_report(result, args.language, users, args.simulator, args.trials)
    print(f"\nheld-out seeds ({args.trials} per user), mean final emotion:\n\n| users | attack | empathic | attack - empathic |\n|---|---:|---:|---:|")
    for part in ("fitted users", "other users", "all users"):
        if f"attack, {part}" in report:
            attack, empathic = report[f"attack, {part}"], report[f"empathic, {part}"]
            print(f"| {part} | {attack:.1f} | {empathic:.1f} | {attack - empathic:+.1f} |")

    played = example_dialogue(result, args.language, args.simulator)
    print(f"\nthe best policy, first turns with held-out user {played.scenario_id}:")
    for message in played.history:
        print(f"  {'agent' if message['role'] == 'assistant' else 'user '}: {message['content']}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": vars(args) | {"users": users, "json": str(args.json)},
                    "trajectory": result.trajectory,
                    "seconds_per_evaluation": result.seconds_per_evaluation,
                    "held_out": report,
                    "genome": result.genome,
                    "example": played.history,
                },
                ensure_ascii=False,
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
