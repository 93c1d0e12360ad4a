"""CPU time of one built-in simulated-user step, with and without the whole-message rules.

    python benchmarks/builtin_step.py                 # the eval split, reference agents' dialogues
    python benchmarks/builtin_step.py --repeats 5
    python benchmarks/builtin_step.py --split eval-zh  # the Chinese user

The reference agents (`agents.eval.baselines`: empathic, solution, random) first play every scenario
of the split for up to 10 turns; each agent step is recorded as the exact arguments of
`react_sync` (scenario, user state, visible history, reply). The recorded steps are then replayed,
timed with `time.process_time`, in two ways side by side:

| row | what runs |
|---|---|
| `all rules` | `react_sync` as shipped, whole-message rules (`sage_gym.simulators.coherence`) included |
| `no whole-message rules` | the same steps with the scenario's language taken out of the coherence rules' registry (`coherence.LANGUAGES`), so the built-in user skips them (its cues, measures and replies stay those of the language) |

Each replay starts with the simulator's text caches cleared and then walks the dialogues in
order, as an environment would: a reply is analysed fresh once, and the earlier replies it is
compared with hit the cache. The best of `--repeats` replays is reported.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

from agents.eval.baselines import make_reference_agent
from sage_gym.scenarios import load_split
from sage_gym.simulators import coherence
from sage_gym.simulators.base import Rules, UserState
from sage_gym.simulators.builtin import clear_caches, react_sync


def record_steps(split: str, agents: tuple[str, ...], turns: int) -> list[tuple]:
    steps = []
    for name in agents:
        for i, scenario in enumerate(load_split(split)):
            agent = make_reference_agent(name, seed=i)
            state = UserState(emotion=40, rules=Rules(), seed=i)
            history = [{"role": "user", "content": scenario.first_message}]
            for _ in range(turns):
                reply = agent(history)
                steps.append((scenario, state, tuple(history), reply))
                reaction = react_sync(scenario, state, history, reply)
                history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
                state = reaction.state
                if reaction.leaves:
                    break
    return steps


def replay_seconds(steps: list[tuple], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        clear_caches()
        start = time.process_time()
        for scenario, state, history, reply in steps:
            react_sync(scenario, state, history, reply)
        best = min(best, time.process_time() - start)
    return best


@contextmanager
def whole_message_rules_off(languages: set[str]):
    saved = {code: coherence.LANGUAGES.pop(code) for code in languages if code in coherence.LANGUAGES}
    try:
        yield
    finally:
        coherence.LANGUAGES.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="eval")
    parser.add_argument("--agents", default="empathic,solution,random")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    steps = record_steps(args.split, tuple(args.agents.split(",")), args.turns)
    with_rules = replay_seconds(steps, args.repeats)
    with whole_message_rules_off({scenario.language for scenario, *_ in steps}):
        without = replay_seconds(steps, args.repeats)
    per_step = lambda seconds: 1e6 * seconds / len(steps)  # noqa: E731
    print(f"{len(steps)} steps ({args.agents} on {args.split}), best of {args.repeats} replays, CPU time per react_sync step:")
    print("| row | us per step |\n|---|---|")
    print(f"| all rules | {per_step(with_rules):.0f} |")
    print(f"| no whole-message rules | {per_step(without):.0f} |")
    print(f"whole-message rules / no whole-message rules: {with_rules / without:.2f}x")


if __name__ == "__main__":
    main()
