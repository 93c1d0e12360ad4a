"""The stable-baselines3 strategy agent: its wrappers pass SB3's checks, its features and plans, training beats random."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from agents.eval.agent_api import ReferenceAgent
from agents.eval.evaluate import EvalSettings, evaluate
from agents.eval.sb3_agent import (
    BUCKETS,
    FEATURES,
    HASH_BUCKETS,
    PLANS,
    SB3StrategyAgent,
    StrategyFeatures,
    hashed_words,
    numeric_dialogue,
    render_plan,
)
from agents.replies.strategies import STRATEGIES, tag_reply
from agents.train_sb3 import SB3Config, main, train
from sage_gym import SageDialogueEnv
from sage_gym.sb3 import NumericDialogueEnv, make_sb3_vec_env
from tests.conftest import make_scenario

# which tag of agents.replies.strategies each template strategy of agents.replies.baselines must produce
TAG_OF = {
    "reflect": "deep_empathy", "validate": "validation", "question": "questioning", "praise": "praise", "advice": "advice",
    "motives": "perspective", "dialectic": "reframing", "reflection": "guided_reflection", "no_blame": "reassurance",
    "platitude": "platitude", "dismiss": "dismissal",
}
HISTORY = [
    {"role": "user", "content": "The landlord sold the building and my bakery has to close by March."},
    {"role": "assistant", "content": "Honestly, it's not a big deal. You just need to move on."},
    {"role": "user", "content": "Wow. Eleven years of early mornings and that's all you have to say?"},
]


def info_for(history, bucket="medium", turn=1, change=-10):
    return {"history": history, "bucket": bucket, "turn": turn, "change": change, "emotion": 40}


def test_single_dialogue_wrapper_passes_sb3_check_env():
    env = NumericDialogueEnv(SageDialogueEnv(scenarios="train", max_turns=4), numeric_dialogue(max_turns=4))
    check_env(env, warn=True)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (FEATURES,) and env.action_space.n == len(PLANS)


def test_vector_adapter_speaks_sb3s_vecenv_protocol_with_these_wrappers():
    venv = make_sb3_vec_env(4, numeric_dialogue(max_turns=3), scenarios="train", max_turns=3)
    venv.seed(0)
    observations = venv.reset()
    assert observations.shape == (4, FEATURES) and observations.dtype == np.float32
    for _ in range(3):
        observations, rewards, dones, infos = venv.step(np.array([0, 12, 16, 22]))
        assert observations.shape == (4, FEATURES) and rewards.shape == (4,) and len(infos) == 4
        assert all(venv.observation_space.contains(o) for o in observations)
    assert dones.all() and all("terminal_observation" in info for info in infos)  # the turn limit ended every dialogue


def test_features_are_in_the_space_and_describe_the_dialogue():
    features = StrategyFeatures(max_turns=10)
    vector = features(HISTORY[-1]["content"], info_for(HISTORY))
    assert features.space.contains(vector)
    assert np.array_equal(vector, features(HISTORY[-1]["content"], info_for(HISTORY)))  # a pure function
    latest, everything = vector[:HASH_BUCKETS], vector[HASH_BUCKETS : 2 * HASH_BUCKETS]
    assert latest[zlib.crc32(b"mornings") % HASH_BUCKETS] > 0 and everything[zlib.crc32(b"landlord") % HASH_BUCKETS] > 0
    assert np.linalg.norm(latest) == pytest.approx(1.0)
    rest = vector[2 * HASH_BUCKETS :]
    assert list(rest[: len(BUCKETS)]) == [0.0, 1.0, 0.0]  # medium
    turn, change = rest[len(BUCKETS)], rest[len(BUCKETS) + 1]
    assert turn == pytest.approx(0.1) and change == pytest.approx(0.0)  # one reply of ten; the last change was -10
    last = rest[len(BUCKETS) + 2 : len(BUCKETS) + 2 + len(STRATEGIES)]
    assert [s for s, flag in zip(STRATEGIES, last) if flag] == ["dismissal"]
    opening = features(HISTORY[0]["content"], info_for(HISTORY[:1], turn=0, change=0))
    assert opening[2 * HASH_BUCKETS + len(BUCKETS) + 1] == pytest.approx(0.5)  # no change yet
    assert opening[2 * HASH_BUCKETS + len(BUCKETS) + 2 :].sum() == 0  # no earlier reply


def test_hashed_words_are_stable_and_normalised():
    vector = hashed_words("Rota rota ROTA, shift!")
    assert vector[zlib.crc32(b"rota") % HASH_BUCKETS] == pytest.approx(3 / np.sqrt(10))
    assert not hashed_words("").any()


@pytest.mark.parametrize("index", range(len(PLANS)))
def test_every_plan_renders_its_strategies_in_the_users_words(index):
    info = info_for(HISTORY)
    reply = render_plan(index, info)
    assert reply == render_plan(index, info)  # deterministic in the dialogue
    tags = set(tag_reply(reply))
    assert {TAG_OF[s] for s in PLANS[index]} <= tags, (PLANS[index], reply, tags)


def test_the_decoder_sees_the_dialogue_its_action_answers():
    seen = []

    def decode(index, info):
        seen.append((info["turn"], info["history"][-1]["content"]))
        return render_plan(index, info)

    numeric = numeric_dialogue(max_turns=2)
    venv = make_sb3_vec_env(2, type(numeric)(numeric.observation_space, numeric.action_space, numeric.encode, decode), scenarios="train", max_turns=2)
    venv.seed(1)
    venv.reset()
    first_messages = [info["history"][0]["content"] for info in venv.reset_infos]
    for _ in range(3):
        venv.step(np.array([0, 1]))
    turns = [turn for turn, _ in seen]
    assert turns == [0, 0, 1, 1, 0, 0]  # after the turn limit, the restarted dialogues begin again
    assert [text for _, text in seen[:2]] == first_messages


def test_a_trained_model_is_evaluated_as_the_sb3_agent(tmp_path):
    path = train(SB3Config(output=str(tmp_path / "run"), timesteps=256, num_envs=4, n_steps=16, batch_size=32, n_epochs=1, max_turns=3, evaluate=False), log=lambda *_: None)
    meta = json.loads((path.parent / "sb3_agent.json").read_text())
    assert meta["algorithm"] == "PPO" and meta["max_turns"] == 3
    settings = EvalSettings(scenarios="eval", limit=4, max_turns=3)
    report = evaluate(SB3StrategyAgent(str(path)), tmp_path / "eval", settings, progress=False, plots=False)
    manifest = report["manifest"]["agent"]
    assert manifest["kind"] == "sb3" and len(manifest["model_sha256"]) == 64 and manifest["training"]["max_turns"] == 3
    assert report["results"]["n"] == 4
    again = evaluate(SB3StrategyAgent(str(path)), tmp_path / "again", settings, progress=False, plots=False)
    assert again["results"] == report["results"]  # a deterministic policy and decoder replay exactly


@pytest.mark.slow
def test_a_short_training_run_beats_the_random_strategy_agent_on_the_eval_split(tmp_path):
    path = main(["--output", str(tmp_path / "run"), "--timesteps", "20000", "--no-evaluate"])
    settings = EvalSettings(scenarios="eval")
    trained = evaluate(SB3StrategyAgent(str(path)), tmp_path / "sb3", settings, progress=False, plots=False)
    random_agent = evaluate(ReferenceAgent("random"), tmp_path / "random", settings, progress=False, plots=False)
    # the bootstrap intervals must not even overlap
    assert trained["results"]["score"]["ci"][0] > random_agent["results"]["score"]["ci"][1], (trained["results"], random_agent["results"])


def test_training_improves_on_a_uniformly_random_choice_of_plans(tmp_path):
    """A fast check that PPO learns: a few thousand steps on one scenario beat choosing plans uniformly."""
    from sage_gym.scenarios import ScenarioSet, write_scenarios

    scenarios = tmp_path / "one.jsonl"
    write_scenarios(ScenarioSet([make_scenario("advice", intention="concrete_advice", character="passive")]), scenarios)
    config = SB3Config(output=str(tmp_path / "run"), scenarios=str(scenarios), timesteps=3072, num_envs=8, n_steps=32, max_turns=5, evaluate=False)
    path = train(config, log=lambda *_: None)
    settings = EvalSettings(scenarios=str(scenarios), max_turns=5, episodes_per_scenario=16)
    trained = evaluate(SB3StrategyAgent(str(path)), tmp_path / "trained", settings, progress=False, plots=False)

    env = NumericDialogueEnv(SageDialogueEnv(scenarios=str(scenarios), max_turns=5), numeric_dialogue(max_turns=5))
    rng, finals = np.random.default_rng(0), []
    for seed in range(16):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(int(rng.integers(len(PLANS))))
            done = terminated or truncated
        finals.append(info["emotion"])
    assert trained["results"]["score"]["mean"] > np.mean(finals) + 10, (trained["results"]["score"], np.mean(finals))
