"""Playing dialogues fast: agents against a simulated user through the public `Simulator` protocol.

`play` runs dialogues through `make_simulator`, `open` and `react`, seeded exactly as
`SageDialogueEnv.reset(seed=...)` seeds them, without the environment's per-step bookkeeping: a
search that plays thousands of dialogues (the attacks of `agents.eval.attacks`, the search of
`agents.eval.search_attack`) needs the speed, and a test checks that it gives the environment's
results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from gymnasium.utils import seeding

from sage_gym.scenarios import Scenario, ScenarioSet
from sage_gym.simulators import Simulator, make_simulator
from sage_gym.simulators.base import Rules

Agent = Callable[[Sequence[Mapping[str, str]]], str]


class Played(NamedTuple):
    """One finished dialogue."""

    scenario_id: str
    seed: int
    emotion: int  # the final emotion
    history: list[dict[str, str]]


async def _play_one(
    simulator: Simulator, scenarios: ScenarioSet, rules: Rules, scenario: Scenario, seed: int, agent: Agent, max_turns: int
) -> Played:
    # the environment's reset: a generator from the seed, one scenario drawn from it (even when the
    # scenario is given), then the simulator opens the dialogue with the same generator
    rng, _ = seeding.np_random(seed)
    scenarios.sample(rng)
    state = await simulator.open(scenario, rng, rules)
    history = [{"role": "user", "content": scenario.first_message}]
    for _ in range(max_turns):
        reply = agent(history)
        reaction = await simulator.react(scenario, state, tuple(history), reply)
        state = reaction.state
        history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
        if reaction.emotion >= rules.success_at or reaction.emotion < rules.failure_below or reaction.leaves:
            break
    return Played(scenario.id, seed, state.emotion, history)


_LOOP: asyncio.AbstractEventLoop | None = None


def play(
    make_agent: Callable[[int], Agent],
    episodes: Sequence[tuple[Scenario, int]],
    simulator: str | Simulator = "builtin",
    scenarios: ScenarioSet | None = None,
    *,
    initial_emotion: int = 40,
    max_turns: int = 10,
    change_clip: tuple[int, int] = (-10, 10),
) -> list[Played]:
    """Play each (scenario, seed) with a fresh `make_agent(seed)` under SAGE's settings; the same
    dialogues `SageDialogueEnv(scenarios, simulator).reset(seed=seed, options={"scenario_id": ...})`
    and its steps would give. `scenarios` is the set the environment would hold (it draws from it
    while seeding); by default the set of the episodes' scenarios."""
    global _LOOP
    sim = make_simulator(simulator) if isinstance(simulator, str) else simulator
    rules = Rules(initial_emotion=initial_emotion, change_clip=change_clip)
    pool = scenarios if scenarios is not None else ScenarioSet(list(dict.fromkeys(s for s, _ in episodes)), name="episodes")

    async def all_of_them() -> list[Played]:
        return list(await asyncio.gather(*(_play_one(sim, pool, rules, s, seed, make_agent(seed), max_turns) for s, seed in episodes)))

    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(all_of_them())


def mean_emotion(played: Sequence[Played]) -> float:
    return float(np.mean([p.emotion for p in played]))
