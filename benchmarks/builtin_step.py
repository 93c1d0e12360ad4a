"""CPU time of one built-in simulated-user step, with and without the whole-message rules.

    python benchmarks/builtin_step.py                 # the eval split, reference agents' dialogues
    python benchmarks/builtin_step.py --repeats 5
    python benchmarks/builtin_step.py --split eval-zh  # the Chinese user

The reference agents (`agents.replies.baselines`: empathic, solution, random) first play every scenario
of the split for up to 10 turns; each agent step is recorded as the exact arguments of
`react_sync` (scenario, user state, visible history, reply). The recorded steps are then replayed,
timed with `time.process_time`, in two ways side by side:

| row | what runs |
|---|---|
| `all rules` | `react_sync` as shipped, whole-message rules (`sage_gym.simulators.coherence`) included |
| `no whole-message rules` | the same steps with the scenario's language taken out of the coherence rules' registry (`coherence.LANGUAGES`), so the built-in user skips them (its cues, measures and replies stay those of the language) |

`--per-reply` instead times each step alone, every cache cleared before it (a reply the user has never
seen, its sentence vectors included), for the rule-based user (version 0) and the calibrated one
(version 1) side by side, step by step, and prints the median and 95th percentile per version, on
two sets of replies: SAGE's recorded Chinese replies (the vendored DeepSeek-V3 judge's dialogues, in
their recorded histories) and the long English replies of the independent long-careful agent
(`agents.eval.independent`) on the eval split:

    python benchmarks/builtin_step.py --per-reply
    python benchmarks/builtin_step.py --per-reply --replies 400

Each replay starts with the simulator's text caches cleared and then walks the dialogues in
order, as an environment would: a reply is analysed fresh once, and the earlier replies it is
compared with hit the cache. The best of `--repeats` replays is reported.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import numpy as np

from agents.eval.independent import make_independent_agent
from agents.replies.baselines import make_reference_agent
from sage_gym.calibrate import load_vendored
from sage_gym.scenarios import load_split
from sage_gym.simulators import coherence
from sage_gym.simulators.base import Rules, UserState
from sage_gym.simulators.builtin import clear_caches, react_sync


def dialogue_steps(make_agent, scenarios, turns: int, limit: int | None = None) -> list[tuple]:
    """Each agent step of `make_agent(seed)` talking with each scenario's user, as `react_sync`'s arguments."""
    steps: list[tuple] = []
    for i, scenario in enumerate(scenarios):
        agent = make_agent(i)
        state = UserState(emotion=40, rules=Rules(), seed=i)
        history = [{"role": "user", "content": scenario.first_message}]
        for _ in range(turns):
            reply = agent(history)
            steps.append((scenario, state, tuple(history), reply))
            reaction = react_sync(scenario, state, history, reply)
            history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
            state = reaction.state
            if reaction.leaves or limit is not None and len(steps) >= limit:
                break
        if limit is not None and len(steps) >= limit:
            break
    return steps


def record_steps(split: str, agents: tuple[str, ...], turns: int) -> list[tuple]:
    return [step for name in agents for step in dialogue_steps(lambda seed, name=name: make_reference_agent(name, seed=seed), load_split(split), turns)]


def replay_seconds(steps: list[tuple], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        clear_caches()
        start = time.process_time()
        for scenario, state, history, reply in steps:
            react_sync(scenario, state, history, reply)
        best = min(best, time.process_time() - start)
    return best


def sage_steps(count: int) -> list[tuple]:
    """SAGE's recorded Chinese replies in their recorded histories, at a neutral emotion."""
    steps = []
    for dialogue in load_vendored():
        for turn in dialogue.turns:
            steps.append((dialogue.scenario, UserState(emotion=40, rules=Rules(), turn=turn.index - 1, seed=0), turn.history, turn.reply))
    return steps[:: max(1, len(steps) // count)][:count]


def long_english_steps(count: int, turns: int) -> list[tuple]:
    """The independent long-careful agent's replies on the eval split (about 150 words each)."""
    return dialogue_steps(lambda seed: make_independent_agent("long_careful", seed=seed), load_split("eval"), turns, limit=count)


def per_reply_ms(steps: list[tuple], versions: tuple[int, ...]) -> dict[int, np.ndarray]:
    """CPU milliseconds of each step alone, caches cleared before it, the versions interleaved."""
    times: dict[int, list[float]] = {v: [] for v in versions}
    for scenario, state, history, reply in steps:
        for version in versions:
            clear_caches()
            start = time.process_time()
            react_sync(scenario, state, history, reply, version)
            times[version].append(1e3 * (time.process_time() - start))
    return {v: np.array(t) for v, t in times.items()}


def print_per_reply(replies: int, turns: int) -> None:
    react_sync(*sage_steps(1)[0], 1)  # loads the embedding table and the fitted files once, untimed
    print("| replies | user | median ms | p95 ms |\n|---|---|---|---|")
    for name, steps in (("SAGE recorded, Chinese", sage_steps(replies)), ("long careful, English", long_english_steps(replies, turns))):
        times = per_reply_ms(steps, (0, 1))
        for version, label in ((0, "rule-based (v0)"), (1, "calibrated (v1)")):
            t = times[version]
            print(f"| {name} ({len(t)}) | {label} | {np.median(t):.2f} | {np.percentile(t, 95):.2f} |")


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
    parser.add_argument("--per-reply", action="store_true", help="percentiles per reply, caches cleared, rule-based vs calibrated user")
    parser.add_argument("--replies", type=int, default=300, help="replies per set for --per-reply (default 300)")
    args = parser.parse_args()
    if args.per_reply:
        print_per_reply(args.replies, args.turns)
        return

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
