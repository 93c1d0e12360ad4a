"""The Stable-Baselines3 views: SB3's checks, its reset/step/auto-reset conventions, a PPO smoke run."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor

from sage_gym import SageDialogueEnv
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, SimulatorError
from sage_gym.sb3 import NumericDialogue, NumericDialogueEnv, SB3VecEnv, make_sb3_vec_env
from sage_gym.vector import SageVectorEnv

MAX_TURNS = 4
REPLIES = (
    "That sounds exhausting. What has been the hardest part of it for you?",
    "It makes complete sense that you feel hurt about that.",
    "Honestly, you should just move on. It could be worse.",
)


def emotion_and_turn(text: str, info) -> np.ndarray:
    """A tiny numeric view of a dialogue: [emotion / 100, turn / max_turns]."""
    return np.array([info["emotion"] / 100, info["turn"] / MAX_TURNS])


def fixed_reply(index: int, info) -> str:
    return REPLIES[index]


NUMERIC = NumericDialogue(spaces.Box(0.0, 1.0, (2,), np.float32), spaces.Discrete(len(REPLIES)), emotion_and_turn, fixed_reply)


def make_venv(num_envs: int = 4, **kwargs) -> SB3VecEnv:
    return make_sb3_vec_env(num_envs, NUMERIC, max_turns=MAX_TURNS, **kwargs)


def test_numeric_dialogue_validates_its_parts():
    with pytest.raises(TypeError, match="Box"):
        NumericDialogue(spaces.Discrete(3), spaces.Discrete(3), emotion_and_turn, fixed_reply)
    with pytest.raises(TypeError, match="Discrete"):
        NumericDialogue(NUMERIC.observation_space, spaces.Box(0, 1, (1,)), emotion_and_turn, fixed_reply)
    with pytest.raises(ValueError, match="not in"):
        NUMERIC.observe("hi", {"emotion": 250, "turn": 0})
    with pytest.raises(ValueError, match="outside"):
        NUMERIC.act(3, {})
    with pytest.raises(TypeError, match="one integer"):
        NUMERIC.act(0.5, {})
    bad_decoder = NumericDialogue(NUMERIC.observation_space, NUMERIC.action_space, emotion_and_turn, lambda i, info: i)
    with pytest.raises(TypeError, match="str"):
        bad_decoder.act(1, {})
    assert NUMERIC.act(np.int64(1), {}) == REPLIES[1]


def test_single_env_view_passes_sb3_check_env():
    check_env(NumericDialogueEnv(SageDialogueEnv(max_turns=MAX_TURNS), NUMERIC), warn=True)


def test_reset_returns_observations_only_and_fills_reset_infos():
    venv = make_venv()
    venv.seed(0)
    observations = venv.reset()
    assert observations.shape == (4, 2) and observations.dtype == np.float32
    assert np.allclose(observations, [[0.4, 0.0]] * 4)
    assert all(info["turn"] == 0 and info["scenario_id"] for info in venv.reset_infos)


def test_step_auto_resets_with_terminal_observation_and_time_limit_flag():
    # From 60, four replies can neither reach 100 early, nor drop below 10, nor reach an avoidant
    # user's walk-out point: every dialogue ends at the turn limit, whatever the scenarios are.
    venv = make_venv(initial_emotion=60)
    venv.seed(1)
    venv.reset()
    for turn in range(1, MAX_TURNS + 1):
        observations, rewards, dones, infos = venv.step(np.array([0, 1, 0, 1]))
        assert rewards.dtype == np.float32 and dones.dtype == np.bool_ and len(infos) == 4
        if not dones.all():
            assert np.allclose(observations[~dones, 1], turn / MAX_TURNS)
    assert dones.all()  # the turn limit ends every dialogue at the same step here
    for i, info in enumerate(infos):
        assert info["terminal_observation"][1] == pytest.approx(1.0)
        assert info["TimeLimit.truncated"] == (info["outcome"] == "truncated")
        assert venv.reset_infos[i]["turn"] == 0
    assert np.allclose(observations[:, 1], 0.0)  # already the next dialogues' first observations
    observations, *_ = venv.step(np.array([0, 0, 0, 0]))
    assert np.allclose(observations[:, 1], 1 / MAX_TURNS)


def test_the_decoder_sees_the_dialogue_it_answers():
    seen = []

    def quoting_reply(index: int, info) -> str:
        seen.append((info["turn"], info["history"][-1]["content"]))
        return REPLIES[index]

    numeric = NumericDialogue(NUMERIC.observation_space, NUMERIC.action_space, emotion_and_turn, quoting_reply)
    venv = make_sb3_vec_env(2, numeric, max_turns=2)
    venv.reset()
    first_messages = [info["history"][-1]["content"] for info in venv.reset_infos]
    _, _, _, infos = venv.step(np.array([0, 1]))
    venv.step(np.array([0, 1]))  # the last turn: both dialogues end and restart
    venv.step(np.array([0, 1]))
    assert seen[:2] == [(0, first_messages[0]), (0, first_messages[1])]
    assert seen[2:4] == [(1, infos[0]["history"][-1]["content"]), (1, infos[1]["history"][-1]["content"])]
    assert [turn for turn, _ in seen[4:]] == [0, 0]  # after the auto-reset: the new dialogues' first messages


def test_seeded_runs_are_reproducible():
    def run(seed):
        venv = make_venv()
        venv.seed(seed)
        trace = [venv.reset()]
        for k in range(6):
            observations, rewards, dones, _ = venv.step(np.array([k % 3, (k + 1) % 3, 2, 0]))
            trace += [observations, rewards, dones]
        return trace

    a, b = run(3), run(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_set_options_chooses_scenarios():
    scenario_id = load_split("train").ids[0]
    venv = make_venv(2)
    venv.set_options({"scenario_id": scenario_id})
    venv.reset()
    assert [info["scenario_id"] for info in venv.reset_infos] == [scenario_id, scenario_id]
    venv.set_options({"unknown": 1})
    with pytest.raises(ValueError, match="scenario_id"):
        venv.reset()


def test_attributes_methods_and_wrappers_reach_the_dialogues():
    venv = make_venv(3)
    venv.reset()
    assert venv.get_attr("max_turns") == [MAX_TURNS] * 3
    venv.set_attr("max_turns", 6, indices=[1])
    assert venv.get_attr("max_turns", indices=[0, 1]) == [MAX_TURNS, 6]
    assert venv.env_method("manifest", indices=2)[0]["rules"]["max_turns"] == MAX_TURNS
    assert venv.env_is_wrapped(Monitor) == [False] * 3
    assert venv.has_attr("emotion") and not venv.has_attr("no_such_attribute")


def test_bad_actions_and_modes_are_refused():
    venv = make_venv(2)
    venv.reset()
    with pytest.raises(ValueError, match="expected 2 actions"):
        venv.step_async(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="outside"):
        venv.step_async(np.array([0, 7]))
    with pytest.raises(ValueError, match="DISABLED"):
        SB3VecEnv(SageVectorEnv(2), NUMERIC)


def test_a_failed_dialogue_is_done_with_outcome_error():
    class Failing(BuiltinSimulator):
        async def react(self, scenario, state, history, agent_reply):
            raise SimulatorError("endpoint unreachable")

    venv = make_venv(2, simulator=Failing())
    venv.reset()
    _, rewards, dones, infos = venv.step(np.array([0, 1]))
    assert dones.all() and rewards.tolist() == [0.0, 0.0]
    assert [info["outcome"] for info in infos] == ["error", "error"]
    assert all("unreachable" in info["error"] for info in infos)


def test_sb3_vec_checks_and_ppo_smoke_run():
    venv = VecMonitor(VecCheckNan(make_venv(4), raise_exception=True))
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps >= 64
    assert len(model.ep_info_buffer) > 0  # VecMonitor saw whole dialogues end and restart
