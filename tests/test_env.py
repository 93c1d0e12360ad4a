"""SageDialogue-v0 through the public Gymnasium interface."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

import sage_gym
from agents.replies.baselines import make_reference_agent
from sage_gym import SageDialogueEnv
from sage_gym.simulators import SimulatorError
from sage_gym.transcripts import read_jsonl


def run_episode(env, agent, seed, scenario_id=None):
    options = {"scenario_id": scenario_id} if scenario_id else None
    obs, info = env.reset(seed=seed, options=options)
    steps = [(obs, None, info["emotion"])]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent(info["history"]))
        steps.append((obs, reward, info["emotion"]))
        done = terminated or truncated
    return steps, info


def test_registered_ids():
    assert isinstance(gym.make("SageDialogue-v0").unwrapped, SageDialogueEnv)
    assert isinstance(gym.make("sage_gym:SageDialogue-v0").unwrapped, SageDialogueEnv)


def test_make_without_prior_import_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = "import gymnasium as g; e = g.make('sage_gym:SageDialogue-v0'); o, i = e.reset(seed=0); print(type(e.unwrapped).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "SageDialogueEnv"


def test_check_env(small_set):
    check_env(SageDialogueEnv(scenarios=small_set), skip_render_check=True)
    check_env(gym.make("SageDialogue-v0", scenarios=small_set, render_mode="ansi").unwrapped)


def test_same_seed_same_trajectory(small_set):
    env = gym.make("SageDialogue-v0", scenarios=small_set)
    a = run_episode(env, make_reference_agent("random", seed=1), seed=7)
    b = run_episode(env, make_reference_agent("random", seed=1), seed=7)
    assert a[0] == b[0]
    c = run_episode(env, make_reference_agent("random", seed=1), seed=8)
    assert a[0] != c[0]


@given(
    texts=st.lists(st.text(max_size=300), min_size=1, max_size=12),
    seed=st.integers(0, 2**31 - 1),
    initial=st.integers(10, 99),
)
def test_emotion_in_range_and_delta_rewards_telescope(small_set, texts, seed, initial):
    env = SageDialogueEnv(scenarios=small_set, initial_emotion=initial, max_turns=12)
    obs, info = env.reset(seed=seed)
    total, done, i = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(texts[i % len(texts)])
        assert 0 <= info["emotion"] <= 100
        assert env.observation_space.contains(obs)
        total += reward
        done = terminated or truncated
        i += 1
    assert total == pytest.approx((info["emotion"] - initial) / 100)


def test_final_reward_mode(small_set):
    env = SageDialogueEnv(scenarios=small_set, reward_mode="final", max_turns=3)
    steps, info = run_episode(env, make_reference_agent("empathic"), seed=0)
    rewards = [r for _, r, _ in steps[1:]]
    assert rewards[:-1] == [0.0] * (len(rewards) - 1)
    assert rewards[-1] == pytest.approx(info["emotion"] / 100)


def test_termination_rules(small_set):
    env = SageDialogueEnv(scenarios=small_set, max_turns=4)
    _, info = run_episode(env, make_reference_agent("empathic"), seed=0)
    assert info["outcome"] in ("success", "truncated", "left") and info["turn"] <= 4
    env = SageDialogueEnv(scenarios=small_set, initial_emotion=20)
    _, info = run_episode(env, make_reference_agent("dismissive"), seed=0)
    assert info["outcome"] in ("failure", "left") and info["emotion"] < 20
    env = SageDialogueEnv(scenarios=small_set, initial_emotion=90)
    _, info = run_episode(env, make_reference_agent("empathic"), seed=0, scenario_id="t-venting-passive")
    assert info["outcome"] == "success" and info["emotion"] == 100


def test_info_contents(small_set):
    env = SageDialogueEnv(scenarios=small_set)
    obs, info = env.reset(seed=0, options={"scenario_id": "t-venting-negative"})
    assert obs == small_set.get("t-venting-negative").first_message
    assert info["history"] == [{"role": "user", "content": obs}] and info["turn"] == 0 and info["outcome"] is None
    obs, reward, terminated, truncated, info = env.step("<think>they lost the bakery</think>Eleven years of the bakery, gone by text? That sounds awful.")
    assert set(info) >= {"emotion", "change", "bucket", "thoughts", "turn", "outcome", "history", "scenario_id", "thinking"}
    assert info["thinking"] == "they lost the bakery"
    assert info["history"][1] == {"role": "assistant", "content": "Eleven years of the bakery, gone by text? That sounds awful."}
    assert info["history"][2] == {"role": "user", "content": obs}
    assert info["turn"] == 1 and info["thoughts"]


def test_strip_think_off_sends_everything(small_set):
    env = SageDialogueEnv(scenarios=small_set, strip_think=False)
    env.reset(seed=0)
    *_, info = env.step("<think>x</think>hello")
    assert info["history"][1]["content"] == "<think>x</think>hello"


def test_render_ansi(small_set):
    env = SageDialogueEnv(scenarios=small_set, render_mode="ansi")
    env.reset(seed=0)
    env.step("That sounds hard, tell me about the bakery.")
    text = env.render()
    assert "AGENT: That sounds hard" in text and "emotion" in text


# ---------------------------------------------------------------- bad input changes nothing


def _snapshot(env):
    return (env.emotion, env.history, env.outcome)


@pytest.mark.parametrize("action, error", [(42, TypeError), (None, TypeError), (b"bytes", TypeError), ("x" * 9000, ValueError)])
def test_bad_actions(small_set, action, error):
    env = SageDialogueEnv(scenarios=small_set)
    env.reset(seed=0)
    before = _snapshot(env)
    with pytest.raises(error):
        env.step(action)
    assert _snapshot(env) == before


def test_empty_action_is_a_valid_but_poor_reply(small_set):
    env = SageDialogueEnv(scenarios=small_set)
    env.reset(seed=0)
    _, reward, *_ = env.step("")
    assert reward < 0


def test_step_before_reset_and_after_end(small_set):
    env = SageDialogueEnv(scenarios=small_set, max_turns=1)
    with pytest.raises(ResetNeeded):
        env.step("hi")
    env.reset(seed=0)
    env.step("That sounds hard, tell me about the bakery.")
    before = _snapshot(env)
    with pytest.raises(ResetNeeded, match="ended"):
        env.step("more")
    assert _snapshot(env) == before


def test_unknown_scenario_id_changes_nothing(small_set):
    env = SageDialogueEnv(scenarios=small_set)
    env.reset(seed=0)
    before = _snapshot(env)
    with pytest.raises(KeyError, match="unknown scenario id"):
        env.reset(options={"scenario_id": "nope"})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"scenario": None, "colour": 1})
    assert _snapshot(env) == before


def test_malformed_scenario_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:1: field 'persona': is missing"):
        SageDialogueEnv(scenarios=path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reward_mode": "sum"}, "reward_mode"),
        ({"max_turns": 0}, "max_turns"),
        ({"initial_emotion": 140}, "initial_emotion"),
        ({"change_clip": (5, 10)}, "change_clip"),
        ({"success_at": 50, "failure_below": 60}, "failure_below"),
        ({"render_mode": "human"}, "render_mode"),
        ({"simulator": "gpt"}, "unknown simulator"),
        ({"max_action_chars": -1}, "max_action_chars"),
        ({"scenarios": "validation"}, "unknown split"),
    ],
)
def test_invalid_constructor_arguments(small_set, kwargs, match):
    kwargs = {"scenarios": small_set, **kwargs}
    with pytest.raises(ValueError, match=match):
        SageDialogueEnv(**kwargs)


class FlakySimulator(sage_gym.BuiltinSimulator):
    """Fails every other react: the env must stay unchanged so the step can be retried."""

    calls = 0

    async def react(self, scenario, state, history, agent_reply):
        FlakySimulator.calls += 1
        if FlakySimulator.calls % 2:
            raise SimulatorError("endpoint http://127.0.0.1:1/v1, model m: connection refused")
        return await super().react(scenario, state, history, agent_reply)


def test_failed_simulator_step_can_be_retried(small_set):
    env = SageDialogueEnv(scenarios=small_set, simulator=FlakySimulator())
    reference = SageDialogueEnv(scenarios=small_set)
    env.reset(seed=3)
    reference.reset(seed=3)
    for text in ("That sounds hard, tell me about the bakery.", "What happened with the landlord?"):
        before = _snapshot(env)
        with pytest.raises(SimulatorError):
            env.step(text)
        assert _snapshot(env) == before
        assert env.step(text)[0] == reference.step(text)[0]


# ---------------------------------------------------------------- transcripts


def test_transcripts_have_every_turn_and_a_manifest(small_set, tmp_path):
    path = tmp_path / "t.jsonl"
    env = SageDialogueEnv(scenarios=small_set, transcript_path=path, max_turns=3)
    for seed in range(3):
        run_episode(env, make_reference_agent("empathic", seed), seed=seed)
    records = list(read_jsonl(path))
    assert len(records) == 3
    rec = records[0]
    assert len(rec["turns"]) == 3 and rec["outcome"] and rec["seed"] == 0
    turn = rec["turns"][0]
    assert set(turn) >= {"agent_text", "agent_reply", "thinking", "user_reply", "emotion", "change", "thoughts"}
    manifest = rec["manifest"]
    assert manifest["simulator"]["kind"] == "builtin" and len(manifest["prompts_sha256"]) == 64
    assert manifest["scenarios"]["sha256"] == small_set.sha256 and manifest["version"]
    assert manifest["rules"]["max_turns"] == 3


def test_transcript_lines_are_whole(tmp_path):
    from sage_gym.transcripts import append_jsonl

    path = tmp_path / "t.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as handle:  # simulate a crash mid-line elsewhere
        handle.write('{"b": ')
    assert list(read_jsonl(path)) == [{"a": 1}]
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"a": 1}


def test_seeded_episodes_are_reproducible_from_the_transcript(small_set, tmp_path):
    path = tmp_path / "t.jsonl"
    env = SageDialogueEnv(scenarios=small_set, transcript_path=path, max_turns=4)
    run_episode(env, make_reference_agent("random", 3), seed=5)
    rec = next(read_jsonl(path))
    replay = SageDialogueEnv(scenarios=small_set, max_turns=4)
    replay.reset(seed=rec["seed"], options={"scenario_id": rec["scenario_id"]})
    emotions = [replay.step(t["agent_text"])[4]["emotion"] for t in rec["turns"]]
    assert emotions == [t["emotion"] for t in rec["turns"]]


def test_actions_are_any_unicode(small_set):
    env = SageDialogueEnv(scenarios=small_set)
    assert env.action_space.contains("你好 😊 ünïcödé")
    assert not env.action_space.contains(3)
    assert isinstance(env.action_space.sample(), str)
    env.reset(seed=0)
    obs, *_ = env.step("你好 😊 bakery")
    assert isinstance(obs, str)
    np.testing.assert_equal(env.emotion is not None, True)


def test_actions_must_be_encodable_text_and_a_bad_one_changes_nothing(tmp_path):
    env = SageDialogueEnv("eval", transcript_path=tmp_path / "t.jsonl", max_turns=1)
    env.reset(seed=0)
    for action in ("\ud800", "fine <think>\udc00</think> hi", "<think>ok</think>\udfff"):
        with pytest.raises(ValueError, match="not valid Unicode"):
            env.step(action)
    assert len(env.history) == 1 and not env.done
    env.step("That sounds hard.")
    assert env.done and (tmp_path / "t.jsonl").read_text().count("\n") == 1
