"""SageVectorEnv: concurrency, GRPO groups, autoreset modes, partial failure, reproducibility."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from hypothesis import given
from hypothesis import strategies as st

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from agents.replies.baselines import make_reference_agent
from sage_gym import SageDialogueEnv
from sage_gym.scenarios import CHARACTER_TYPES, HIDDEN_INTENTIONS, INTENTION_TEXT, ScenarioSet, load_split
from sage_gym.simulators import BuiltinSimulator, SimulatorError
from sage_gym.transcripts import read_jsonl
from sage_gym.vector import SageVectorEnv, parse_autoreset_mode, unbatch_infos

REQUIRED_INFO_KEYS = ("emotion", "change", "bucket", "thoughts", "turn", "outcome", "history", "scenario_id", "thinking", "error")
REPLY = "That sounds really hard. What has been the hardest part of it for you?"


class SlowSimulator(BuiltinSimulator):
    """The built-in user, but every reaction waits `latency` seconds (a network call's shape).

    It counts the calls in flight, so a test can see how many ran at the same time.
    """

    kind = "slow-builtin"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    async def react(self, scenario, state, history, agent_reply):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            return await super().react(scenario, state, history, agent_reply)
        finally:
            self.in_flight -= 1


class FlakySimulator(BuiltinSimulator):
    """The built-in user, except that reacting in scenario `bad_id` raises `error`."""

    kind = "flaky-builtin"

    def __init__(self, bad_id: str, error: Exception) -> None:
        self.bad_id = bad_id
        self.error = error

    async def react(self, scenario, state, history, agent_reply):
        if scenario.id == self.bad_id:
            raise self.error
        return await super().react(scenario, state, history, agent_reply)


class LeavingSimulator(BuiltinSimulator):
    """The built-in user, except that in scenario `leaver_id` the user leaves after the first reply."""

    kind = "leaving-builtin"

    def __init__(self, leaver_id: str) -> None:
        self.leaver_id = leaver_id

    async def react(self, scenario, state, history, agent_reply):
        reaction = await super().react(scenario, state, history, agent_reply)
        return dataclasses.replace(reaction, leaves=True) if scenario.id == self.leaver_id else reaction


@pytest.fixture(scope="module")
def distinct_set() -> ScenarioSet:
    """24 scenarios (every intention x character type) with a different first message each."""
    template = load_split("train")[0]
    return ScenarioSet(
        [
            dataclasses.replace(
                template,
                id=f"v-{intention}-{character}",
                hidden_intention=intention,
                intention_text=INTENTION_TEXT[intention],
                character_type=character,
                first_message=f"{template.first_message} [{intention}, {character}]",
            )
            for intention in HIDDEN_INTENTIONS
            for character in CHARACTER_TYPES
        ],
        name="distinct",
    )


def run_to_the_end(envs: SageVectorEnv, agents, seed, options=None):
    """Reset, then step every dialogue with its own reference agent until all have finished (DISABLED mode)."""
    observations, infos = envs.reset(seed=seed, options=options)
    trace = [observations]
    while not envs.done.all():
        histories = infos["history"]
        actions = [None if envs.done[i] else agents[i](histories[i]) for i in range(envs.num_envs)]
        observations, rewards, terminations, truncations, infos = envs.step(actions)
        trace.append((observations, rewards.tolist(), infos["emotion"].tolist()))
    return trace, infos


# ---------------------------------------------------------------------------------------------
# construction and the Gymnasium interface


def test_make_vec_returns_the_concurrent_env():
    default = gym.make_vec("SageDialogue-v0", num_envs=3)
    explicit = gym.make_vec("SageDialogue-v0", num_envs=3, vectorization_mode="vector_entry_point", autoreset_mode="disabled", max_turns=4)
    assert isinstance(default.unwrapped, SageVectorEnv) and isinstance(explicit.unwrapped, SageVectorEnv)
    assert default.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert explicit.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    assert [env.max_turns for env in explicit.unwrapped.envs] == [4, 4, 4]
    assert default.num_envs == 3 and len(default.unwrapped.envs) == 3


def test_spaces_shared_simulator_and_scenarios():
    envs = SageVectorEnv(4, scenarios=load_split("train"))
    assert all(env.simulator is envs.simulator for env in envs.envs)
    assert all(env.scenarios is envs.scenarios for env in envs.envs)
    observations, infos = envs.reset(seed=0)
    assert isinstance(observations, tuple) and all(isinstance(o, str) for o in observations)
    assert envs.observation_space.contains(observations)
    assert envs.single_observation_space == envs.envs[0].observation_space
    assert envs.action_space.contains(tuple([REPLY] * 4))
    for key in REQUIRED_INFO_KEYS:
        assert key in infos and infos[f"_{key}"].all(), key
    observations, rewards, terminations, truncations, infos = envs.step([REPLY] * 4)
    assert rewards.dtype == np.float64 and rewards.shape == (4,)
    assert terminations.dtype == np.bool_ and truncations.dtype == np.bool_
    assert infos["turn"].tolist() == [1, 1, 1, 1]
    assert infos["emotion"].dtype.kind == "i"
    assert infos["error"].tolist() == [None] * 4


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_construction(bad):
    with pytest.raises(ValueError):
        SageVectorEnv(bad)
    with pytest.raises(ValueError):
        SageVectorEnv(2, max_concurrency=bad)


def test_autoreset_mode_names():
    assert parse_autoreset_mode("next_step") is AutoresetMode.NEXT_STEP
    assert parse_autoreset_mode("Disabled") is AutoresetMode.DISABLED
    assert parse_autoreset_mode(AutoresetMode.DISABLED) is AutoresetMode.DISABLED
    with pytest.raises(ValueError, match="NEXT_STEP or DISABLED"):
        parse_autoreset_mode(AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError):
        parse_autoreset_mode("sometimes")


# ---------------------------------------------------------------------------------------------
# seeds, groups and scenario ids


def test_same_seed_gives_the_batch_of_single_environments(distinct_set, tmp_path):
    """Sub-env i with seed s behaves exactly like SageDialogueEnv reset with s + i: same transcripts."""
    n, seed = 6, 11
    vector_path, single_path = tmp_path / "vector.jsonl", tmp_path / "single.jsonl"
    envs = SageVectorEnv(n, distinct_set, autoreset_mode="disabled", max_turns=5, transcript_path=vector_path)
    trace, _ = run_to_the_end(envs, [make_reference_agent("random", seed=i) for i in range(n)], seed=seed)

    for i in range(n):
        env = SageDialogueEnv(distinct_set, max_turns=5, transcript_path=single_path)
        agent = make_reference_agent("random", seed=i)
        observation, info = env.reset(seed=seed + i)
        assert observation == trace[0][i]
        for observations, rewards, emotions in trace[1:]:
            if env.done:
                assert observations[i] == observation and rewards[i] == 0.0  # DISABLED: a no-op
                continue
            observation, reward, _, _, info = env.step(agent(info["history"]))
            assert (observation, reward, info["emotion"]) == (observations[i], rewards[i], emotions[i])

    def episodes(path):
        drop = ("started_at", "finished_at")
        return sorted(({k: v for k, v in r.items() if k not in drop} for r in read_jsonl(path)), key=lambda r: r["seed"])

    vector_records, single_records = episodes(vector_path), episodes(single_path)
    assert len(vector_records) == n
    assert vector_records == single_records


def test_same_seed_same_batch_and_other_seed_other_batch(distinct_set):
    envs = SageVectorEnv(4, distinct_set, autoreset_mode="disabled", max_turns=3)
    agents = lambda: [make_reference_agent("empathic", seed=i) for i in range(4)]  # noqa: E731
    a, _ = run_to_the_end(envs, agents(), seed=3)
    b, _ = run_to_the_end(envs, agents(), seed=3)
    c, _ = run_to_the_end(envs, agents(), seed=4000)
    assert a == b
    assert a != c


@given(seed=st.integers(0, 2**31 - 1), group_size=st.sampled_from([1, 2, 3, 6]))
def test_group_copies_start_identically_and_are_seeded_apart(distinct_set, seed, group_size):
    envs = SageVectorEnv(6, distinct_set)
    observations, infos = envs.reset(seed=seed, options={"group_size": group_size})
    for k in range(6 // group_size):
        members = range(k * group_size, (k + 1) * group_size)
        assert len({observations[i] for i in members}) == 1
        assert len({infos["scenario_id"][i] for i in members}) == 1
        assert len({envs.envs[i].emotion for i in members}) == 1
    # the group's scenario is the one its first sub-env draws by itself from seed + k*G
    leader = SageDialogueEnv(distinct_set)
    leader.reset(seed=seed)
    assert infos["scenario_id"][0] == leader.scenario.id
    # every copy has its own seed, so the copies are independent from here on
    assert [env.np_random_seed for env in envs.envs] == [seed + i for i in range(6)]


def test_group_scenarios_are_drawn_per_group(distinct_set):
    envs = SageVectorEnv(24, distinct_set)
    _, infos = envs.reset(seed=5, options={"group_size": 2})
    assert len(set(infos["scenario_id"])) > 1  # 12 groups drawing from 24 scenarios: not all the same


def test_scenario_ids_per_group_and_per_env(distinct_set):
    ids = list(distinct_set.ids)
    envs = SageVectorEnv(4, distinct_set)
    _, infos = envs.reset(seed=0, options={"group_size": 2, "scenario_ids": [ids[3], ids[7]]})
    assert infos["scenario_id"].tolist() == [ids[3], ids[3], ids[7], ids[7]]
    _, infos = envs.reset(seed=0, options={"group_size": 2, "scenario_ids": [ids[1], ids[1], ids[2], ids[2]]})
    assert infos["scenario_id"].tolist() == [ids[1], ids[1], ids[2], ids[2]]
    _, infos = envs.reset(seed=0, options={"scenario_ids": [ids[0], None, ids[0], None]})
    assert infos["scenario_id"][0] == infos["scenario_id"][2] == ids[0]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"group_size": 3}, ValueError),  # 4 is not a multiple of 3
        ({"group_size": 0}, ValueError),
        ({"scenario_ids": [0, 1, 2]}, ValueError),  # neither one per group nor one per sub-env
        ({"group_size": 2, "scenario_ids": [0, 1, 0, 1]}, ValueError),  # differs within a group
        ({"scenario_ids": "abcd"}, TypeError),
        ({"scenario_ids": [b"a", b"b", b"c", b"d"]}, TypeError),
        ({"scenario_ids": ["no-such-scenario"] * 4}, KeyError),
        ({"scenario_id": 0}, ValueError),  # the single env's option, not the vector env's
        ({"reset_mask": [True] * 4}, TypeError),  # Gymnasium wants a bool np.ndarray
    ],
)
def test_bad_reset_options(distinct_set, options, error):
    def real_id(value):  # integers in the table stand for real scenario ids
        return distinct_set.ids[value] if isinstance(value, int) else value

    if isinstance(options.get("scenario_ids"), list):
        options = {**options, "scenario_ids": [real_id(v) for v in options["scenario_ids"]]}
    envs = SageVectorEnv(4, distinct_set)
    with pytest.raises(error):
        envs.reset(seed=0, options=options)


@pytest.mark.parametrize(("seed", "error"), [([1, 2], ValueError), ("7", TypeError), ([1, 2, "3", 4], TypeError), (-1, ValueError), ([0, 1, -5, 2], ValueError)])
def test_bad_seeds(seed, error):
    with pytest.raises(error):
        SageVectorEnv(4).reset(seed=seed)


def test_reset_mask_resets_only_those(distinct_set):
    envs = SageVectorEnv(3, distinct_set, autoreset_mode="disabled")
    with pytest.raises(ResetNeeded):
        envs.reset(options={"reset_mask": np.array([True, False, False])})
    first, _ = envs.reset(seed=1)
    stepped, *_ = envs.step([REPLY] * 3)
    observations, infos = envs.reset(seed=1, options={"reset_mask": np.array([False, True, False])})
    assert observations == (stepped[0], first[1], stepped[2])
    assert infos["_turn"].tolist() == [False, True, False]
    assert [env.emotion is not None for env in envs.envs] == [True] * 3
    with pytest.raises(ValueError, match="group_size"):
        envs.reset(options={"reset_mask": np.array([True, True, False]), "group_size": 3})
    with pytest.raises(ValueError, match="no True"):
        envs.reset(options={"reset_mask": np.zeros(3, dtype=bool)})


# ---------------------------------------------------------------------------------------------
# autoreset modes


def test_disabled_mode_keeps_finished_dialogues_finished(distinct_set):
    envs = SageVectorEnv(3, distinct_set, autoreset_mode="disabled", max_turns=2)
    envs.reset(seed=0)
    envs.step([REPLY] * 3)
    last, rewards, terminations, truncations, infos = envs.step([REPLY] * 3)
    assert truncations.all() and not terminations.any() and envs.done.all()
    assert infos["outcome"].tolist() == ["truncated"] * 3
    for _ in range(2):  # stepping finished dialogues is a no-op; their actions may be None
        again, rewards, terminations2, truncations2, infos2 = envs.step([None, REPLY, 17])
        assert again == last and rewards.tolist() == [0.0] * 3
        assert truncations2.all() and not terminations2.any()
        assert infos2["turn"].tolist() == [2, 2, 2] and infos2["outcome"].tolist() == ["truncated"] * 3
    assert [env.emotion for env in envs.envs] == infos["emotion"].tolist()
    envs.reset(seed=0)
    assert not envs.done.any()


def test_disabled_mode_steps_only_the_running_dialogues(distinct_set):
    leaver, stayer = distinct_set.ids[0], distinct_set.ids[1]
    envs = SageVectorEnv(2, distinct_set, LeavingSimulator(leaver), autoreset_mode="disabled", max_turns=3)
    envs.reset(seed=0, options={"scenario_ids": [leaver, stayer]})
    _, _, terminations, _, infos = envs.step([REPLY, REPLY])
    assert terminations.tolist() == [True, False] and infos["outcome"].tolist() == ["left", None]
    assert envs.done.tolist() == [True, False]
    with pytest.raises(TypeError, match="action 1"):
        envs.step([None, None])  # the running dialogue needs a real action
    _, rewards, _, _, infos = envs.step([None, "Anyone would feel the same way about that."])
    assert infos["turn"].tolist() == [1, 2] and rewards[0] == 0.0


def test_next_step_mode_resets_on_the_step_after_the_end(distinct_set):
    leaver, stayer = distinct_set.ids[0], distinct_set.ids[1]
    envs = SageVectorEnv(2, distinct_set, LeavingSimulator(leaver), max_turns=3)
    first, _ = envs.reset(seed=0, options={"scenario_ids": [leaver, stayer]})
    _, _, terminations, _, infos = envs.step([REPLY, REPLY])
    assert terminations.tolist() == [True, False]
    # the next step resets sub-env 0 and ignores its action; sub-env 1 goes on
    observations, rewards, terminations, truncations, infos = envs.step([None, "Anyone would feel the same way about that."])
    assert infos["turn"].tolist() == [0, 2]
    assert rewards[0] == 0.0 and not terminations[0] and not truncations[0]
    assert infos["outcome"][0] is None and infos["emotion"][0] == 40
    assert observations[0] == distinct_set.get(infos["scenario_id"][0]).first_message
    assert not envs.done[0]
    _, _, _, truncations, infos = envs.step([REPLY, "It makes sense to feel hurt."])
    assert infos["turn"].tolist() == [1, 3] and truncations[1]


# ---------------------------------------------------------------------------------------------
# failures


def test_partial_failure_ends_one_dialogue_and_the_others_go_on(distinct_set, tmp_path):
    bad, good = distinct_set.ids[0], distinct_set.ids[1]
    path = tmp_path / "t.jsonl"
    flaky = FlakySimulator(bad, SimulatorError("endpoint http://127.0.0.1:1/v1 timed out after 3 attempts"))
    envs = SageVectorEnv(4, distinct_set, flaky, autoreset_mode="disabled", max_turns=2, transcript_path=path)
    first, _ = envs.reset(seed=0, options={"scenario_ids": [good, bad, good, good]})
    observations, rewards, terminations, truncations, infos = envs.step([REPLY] * 4)
    assert terminations.tolist() == [False, True, False, False] and not truncations.any()
    assert rewards[1] == 0.0 and observations[1] == first[1]
    assert infos["outcome"].tolist() == [None, "error", None, None]
    assert "timed out" in infos["error"][1] and infos["error"][0] is None
    assert envs.envs[1].outcome == "error" and envs.done.tolist() == [False, True, False, False]
    _, _, _, truncations, infos = envs.step([REPLY, None, REPLY, REPLY])
    assert truncations.tolist() == [True, False, True, True] and infos["outcome"][1] == "error"
    records = list(read_jsonl(path))
    assert sorted(r["outcome"] for r in records) == ["error", "truncated", "truncated", "truncated"]
    assert "timed out" in next(r for r in records if r["outcome"] == "error")["error"]


def test_partial_failure_in_next_step_mode_restarts_the_failed_dialogue(distinct_set):
    bad, good = distinct_set.ids[0], distinct_set.ids[1]
    envs = SageVectorEnv(2, distinct_set, FlakySimulator(bad, SimulatorError("down")), max_turns=3)
    envs.reset(seed=0, options={"scenario_ids": [bad, good]})
    _, _, terminations, _, infos = envs.step([REPLY, REPLY])
    assert terminations.tolist() == [True, False] and infos["outcome"][0] == "error"
    _, _, terminations, _, infos = envs.step([None, REPLY])
    assert infos["turn"].tolist() == [0, 2] and infos["error"][0] is None


@pytest.mark.parametrize("error", [RuntimeError("a bug in a simulator"), AttributeError("'NoneType' object has no attribute 'message'"), ValueError("an invalid reaction")])
def test_any_failure_in_one_sub_env_is_contained_and_the_others_are_returned(distinct_set, tmp_path, error):
    bad, good = distinct_set.ids[0], distinct_set.ids[1]
    path = tmp_path / "t.jsonl"
    envs = SageVectorEnv(3, distinct_set, FlakySimulator(bad, error), autoreset_mode="disabled", transcript_path=path)
    envs.reset(seed=0, options={"scenario_ids": [good, bad, good]})
    _, rewards, terminations, _, infos = envs.step([REPLY] * 3)
    assert [len(env.history) for env in envs.envs] == [3, 1, 3]  # the others advanced, and their results came back
    assert infos["turn"].tolist() == [1, 0, 1] and terminations.tolist() == [False, True, False]
    assert infos["outcome"][1] == "error" and infos["error"][1] == f"{type(error).__name__}: {error}" and rewards[1] == 0.0
    assert [r["outcome"] for r in read_jsonl(path)] == ["error"]


def test_a_failed_restart_keeps_the_sub_env_finished_and_retries_next_step(distinct_set):
    class OpensOnce(BuiltinSimulator):
        opened = 0

        async def open(self, scenario, rng, rules):
            self.opened += 1
            if self.opened > 2:
                raise SimulatorError("cannot open now")
            return await super().open(scenario, rng, rules)

        async def react(self, scenario, state, history, agent_reply):
            reaction = await super().react(scenario, state, history, agent_reply)
            return dataclasses.replace(reaction, leaves=True)  # every dialogue ends after one reply

    simulator = OpensOnce()
    envs = SageVectorEnv(2, distinct_set, simulator)
    envs.reset(seed=0)
    envs.step([REPLY, REPLY])
    observations, _, terminations, _, infos = envs.step([None, None])  # both restarts fail
    assert terminations.tolist() == [True, True] and infos["outcome"].tolist() == ["error", "error"]
    assert "cannot open now" in infos["error"][0]
    simulator.opened = 0
    observations, _, terminations, _, infos = envs.step([None, None])  # retried, and now they start
    assert terminations.tolist() == [False, False] and infos["turn"].tolist() == [0, 0] and infos["error"].tolist() == [None, None]


def test_bad_actions_fail_before_any_simulator_call(distinct_set):
    slow = SlowSimulator(latency=0.0)
    envs = SageVectorEnv(3, distinct_set, slow, max_action_chars=100)
    with pytest.raises(ResetNeeded):
        envs.step([REPLY] * 3)
    envs.reset(seed=0)
    for actions, error, match in [
        ([REPLY] * 2, ValueError, "expected 3 actions"),
        (REPLY, TypeError, "sequence of 3 strings"),
        ([REPLY, 7, REPLY], TypeError, "action 1"),
        ([REPLY, REPLY, "x" * 101], ValueError, "action 2"),
        ([REPLY, None, REPLY], TypeError, "action 1"),
        ([REPLY, REPLY, "fine \ud800"], ValueError, "action 2: .*not valid Unicode"),
        ([REPLY, "<think>\udfff</think> hello", REPLY], ValueError, "action 1: .*not valid Unicode"),
    ]:
        with pytest.raises(error, match=match):
            envs.step(actions)
    assert slow.calls == 0 and [len(env.history) for env in envs.envs] == [1, 1, 1]


def test_simulator_error_while_starting_propagates_and_needs_a_new_reset(distinct_set):
    class NoStart(BuiltinSimulator):
        async def open(self, scenario, rng, rules):
            raise SimulatorError("cannot open")

    envs = SageVectorEnv(2, distinct_set, NoStart())
    with pytest.raises(SimulatorError):
        envs.reset(seed=0)
    with pytest.raises(ResetNeeded):
        envs.step([REPLY, REPLY])


# ---------------------------------------------------------------------------------------------
# concurrency


def test_calls_of_one_step_are_in_flight_together(distinct_set):
    slow = SlowSimulator(latency=0.02)
    envs = SageVectorEnv(16, distinct_set, slow, max_turns=3)
    envs.reset(seed=0)
    envs.step([REPLY] * 16)
    assert slow.max_in_flight == 16


def test_max_concurrency_bounds_the_calls_in_flight(distinct_set):
    slow = SlowSimulator(latency=0.02)
    envs = SageVectorEnv(10, distinct_set, slow, max_concurrency=3)
    envs.reset(seed=0)
    envs.step([REPLY] * 10)
    assert slow.max_in_flight == 3 and slow.calls == 10


def test_concurrent_steps_take_about_one_latency_not_n(distinct_set):
    """A ratio with generous slack, not a fixed time: N dialogues x T turns vs the sequential sum of waits."""
    latency, n, turns = 0.05, 16, 3
    envs = SageVectorEnv(n, distinct_set, SlowSimulator(latency), autoreset_mode="disabled", max_turns=turns)
    envs.reset(seed=0)
    start = time.perf_counter()
    for _ in range(turns):
        envs.step([REPLY] * n)
    elapsed = time.perf_counter() - start
    sequential_lower_bound = n * turns * latency  # a sequential loop waits for every call in turn
    assert elapsed / sequential_lower_bound < 0.5


def test_concurrent_steps_against_the_local_server_with_latency(distinct_set):
    """Through the whole HTTP path: N dialogues take about one latency per call, not N."""
    import httpx

    from sage_gym.servers.simulator_server import run_server_in_thread

    latency, n, turns, calls_per_turn = 0.1, 16, 2, 2
    with run_server_in_thread(latency_ms=latency * 1000) as base_url:
        envs = SageVectorEnv(
            n, distinct_set, "openai", {"base_url": base_url, "model": "sage_gym.builtin"}, autoreset_mode="disabled", max_turns=turns
        )
        envs.reset(seed=0)
        start = time.perf_counter()
        for _ in range(turns):
            _, _, _, _, infos = envs.step([REPLY] * n)
        elapsed = time.perf_counter() - start
        peak = httpx.get(base_url.removesuffix("/v1") + "/stats").json()["peak_in_flight"]
        envs.close()
    assert infos["error"].tolist() == [None] * n and infos["turn"].tolist() == [turns] * n
    sequential_lower_bound = n * turns * calls_per_turn * latency
    assert elapsed / sequential_lower_bound < 0.5
    assert peak > n // 2  # a sequential loop never has more than one request in flight


def test_async_api_on_the_callers_own_loop(distinct_set):
    slow = SlowSimulator(latency=0.01)
    envs = SageVectorEnv(4, distinct_set, slow, autoreset_mode="disabled", max_turns=2)

    async def rollout():
        observations, _ = await envs.areset(seed=2, options={"group_size": 2})
        result = await envs.astep([REPLY] * 4)
        return observations, result

    observations, (_, _, _, _, infos) = asyncio.run(rollout())
    assert observations[0] == observations[1] and infos["turn"].tolist() == [1] * 4
    assert slow.max_in_flight == 4


# ---------------------------------------------------------------------------------------------
# helpers


def test_unbatch_infos_round_trips_gymnasium_vector_infos():
    envs = SageVectorEnv(3, autoreset_mode="disabled")
    infos: dict = {}
    singles = [{"a": 1, "b": "x", "nested": {"c": 2.5}}, {"a": 2}, {"b": "z", "nested": {"c": 1.0}}]
    for i, info in enumerate(singles):
        infos = envs._add_info(infos, info, i)
    assert unbatch_infos(infos, 3) == singles


def test_render_and_call():
    envs = SageVectorEnv(2, render_mode="ansi")
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and all("USER" in f for f in frames)
    assert envs.get_attr("max_turns") == (10, 10)
    envs.set_attr("max_turns", [4, 5])
    assert envs.call("max_turns") == (4, 5)
    assert SageVectorEnv(1).render() is None


def test_a_rejected_reset_changes_nothing(distinct_set):
    envs = SageVectorEnv(2, distinct_set, autoreset_mode="disabled")
    first, _ = envs.reset(seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        envs.reset(seed=-3)
    with pytest.raises(TypeError, match="scenario id is a str"):
        envs.envs[0].reset(seed=1, options={"scenario_id": 7})
    observations, _, _, _, infos = envs.step([REPLY, REPLY])  # the batch from before is still running
    assert infos["turn"].tolist() == [1, 1] and infos["history"][0][0]["content"] == first[0]
