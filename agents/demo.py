"""Watch a reference agent talk with a simulated user: `python -m agents.demo`.

Prints a readable transcript with the user's emotion after every turn. By default the empathic
reference agent talks with the built-in simulator on one scenario of the eval split;
`--scenarios eval-zh` plays a Chinese one (the agent and the user both speak Chinese).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import unicodedata

import gymnasium as gym

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from agents.cli import UsageError, run_main
from agents.replies.baselines import REFERENCE_AGENTS, make_reference_agent


def bar(emotion: int, width: int = 20) -> str:
    filled = round(emotion / 100 * width)
    return "#" * filled + "." * (width - filled)


def wrap(prefix: str, text: str) -> str:
    # Chinese characters take two columns and have no spaces to break at: half as many per line
    wide = any(unicodedata.east_asian_width(c) in "WF" for c in text)
    return textwrap.fill(text, width=(100 + len(prefix)) // 2 if wide else 100, initial_indent=prefix, subsequent_indent=" " * len(prefix))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="empathic", choices=sorted(REFERENCE_AGENTS), help="reference agent (default: empathic)")
    parser.add_argument("--scenarios", default="eval", help="split name (train, eval, train-zh, eval-zh) or JSONL path (default: eval)")
    parser.add_argument("--scenario-id", default=None, help="a scenario id (default: drawn by the seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-turns", type=int, default=10)
    parser.add_argument("--initial-emotion", type=int, default=40)
    parser.add_argument("--show-thoughts", action="store_true", help="also print the user's hidden inner thoughts")
    args = parser.parse_args(argv)

    env = gym.make("SageDialogue-v0", scenarios=args.scenarios, max_turns=args.max_turns, initial_emotion=args.initial_emotion)
    agent = make_reference_agent(args.agent, seed=args.seed)
    options = {"scenario_id": args.scenario_id} if args.scenario_id else None
    try:
        obs, info = env.reset(seed=args.seed, options=options)
    except KeyError:  # the env's answer to an id that is not in the set
        ids = env.unwrapped.scenarios.ids
        raise UsageError(f"no scenario {args.scenario_id!r} in {args.scenarios}: its {len(ids)} ids run from {ids[0]} to {ids[-1]}") from None
    s = env.unwrapped.scenario
    print(f"Scenario {s.id}: {s.persona.name}, {s.persona.age}, {s.persona.occupation} ({s.character_type}; hidden intention: {s.hidden_intention})")
    print(f"Agent: {args.agent}    start emotion {info['emotion']}\n")
    print(wrap("USER : ", obs))
    total, done = 0.0, False
    while not done:
        reply = agent(info["history"])
        obs, reward, terminated, truncated, info = env.step(reply)
        total += reward
        done = terminated or truncated
        print(wrap("AGENT: ", reply))
        print(wrap("USER : ", obs))
        print(f"       emotion {info['emotion']:3d} [{bar(info['emotion'])}] {info['change']:+d}")
        if args.show_thoughts:
            print(wrap("       thinks: ", info["thoughts"]))
        print()
    print(f"Outcome: {info['outcome']} after {info['turn']} turns, final emotion {info['emotion']} (grade {info['grade']}), return {total:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m agents.demo"))
