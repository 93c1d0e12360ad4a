"""verl's interaction interface over SageDialogue: a dialogue played through SageInteraction matches
the same dialogue in process, turn scores are the emotion changes, and a failed simulator gives None.

verl itself (torch, ray, ...) is not installed by the test extras, and verl 0.8+ has no
`verl.interactions`; the interface is checked against the signatures of verl 0.7's
`verl.interactions.base.BaseInteraction` written out below, and against the real class when it imports."""

import asyncio
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from agents.eval.baselines import make_reference_agent
from sage_gym.env import SageDialogueEnv
from sage_gym.integrations import verl as sage_verl
from sage_gym.simulators import BuiltinSimulator, SimulatorError

# verl 0.7.1, verl/interactions/base.py: name -> parameters (all coroutines)
VERL_INTERFACE = {
    "start_interaction": ["self", "instance_id", "kwargs"],
    "generate_response": ["self", "instance_id", "messages", "kwargs"],
    "calculate_score": ["self"],
    "finalize_interaction": ["self"],
}
YAML = Path(sage_verl.__file__).with_name("verl_interaction.yaml")


def load_like_verl(path):
    """What verl's initialize_interactions_from_config does: import class_name, pass config plus name."""
    interactions = {}
    for item in yaml.safe_load(path.read_text())["interaction"]:
        module, cls = item["class_name"].rsplit(".", 1)
        interactions[item["name"]] = getattr(importlib.import_module(module), cls)(config={**item["config"], "name": item["name"]})
    return interactions


def test_follows_verls_interface():
    try:
        from verl.interactions.base import BaseInteraction
    except ImportError:
        print("verl.interactions is not importable: checked against verl 0.7's documented signatures")
    else:
        from verl.interactions.utils.interaction_registry import initialize_interactions_from_config

        assert issubclass(sage_verl.SageInteraction, BaseInteraction)
        loaded = initialize_interactions_from_config(str(YAML))  # verl's own registry
        assert isinstance(loaded["sage"], sage_verl.SageInteraction) and loaded["sage"].env_kwargs["max_turns"] == 8
    for name, params in VERL_INTERFACE.items():
        method = getattr(sage_verl.SageInteraction, name)
        assert inspect.iscoroutinefunction(method), name
        ours = list(inspect.signature(method).parameters)
        assert ours[: len(params) - 1] == params[:-1] or name in ("calculate_score", "finalize_interaction"), (name, ours)
        assert "kwargs" in ours  # verl passes interaction_kwargs through


def test_dialogue_through_the_interaction_matches_the_env():
    interaction = load_like_verl(YAML)["sage"]
    assert interaction.name == "sage"
    rows = sage_verl.verl_dataset_rows("train")
    kwargs = rows[3]["extra_info"]["interaction_kwargs"]
    assert kwargs["name"] == "sage" and rows[3]["prompt"][-1]["content"] == interaction.scenarios.get(kwargs["scenario_id"]).first_message

    async def play():
        agent = make_reference_agent("empathic", seed=0)
        instance = await interaction.start_interaction("rollout-1", **kwargs)
        messages = list(rows[3]["prompt"][1:])
        scores, done = [], False
        while not done:
            messages.append({"role": "assistant", "content": agent(messages)})
            done, answer, score, meta = await interaction.generate_response(instance, messages, **kwargs)
            messages.append({"role": "user", "content": answer})
            scores.append((score, meta["emotion"], meta["outcome"]))
        total = await interaction.calculate_score(instance)
        await interaction.finalize_interaction(instance)
        return scores, total

    scores, total = asyncio.run(play())
    env = SageDialogueEnv("train", initial_emotion=30, max_turns=8)
    agent = make_reference_agent("empathic", seed=0)
    _, info = env.reset(seed=kwargs["seed"], options={"scenario_id": kwargs["scenario_id"]})
    expected, done = [], False
    while not done:
        _, reward, terminated, truncated, info = env.step(agent(info["history"]))
        done = terminated or truncated
        expected.append((reward, info["emotion"], info["outcome"]))
    assert scores == expected and scores[-1][2] is not None
    assert total == pytest.approx(sum(s for s, _, _ in scores)) == pytest.approx((scores[-1][1] - 30) / 100)
    with pytest.raises(KeyError, match="start_interaction"):
        asyncio.run(interaction.calculate_score("rollout-1"))


class Broken(BuiltinSimulator):
    async def react(self, scenario, state, history, agent_reply):
        raise SimulatorError("the endpoint is down")


def test_a_failed_simulator_ends_the_dialogue_with_no_score():
    interaction = sage_verl.SageInteraction({"scenarios": "eval"})
    interaction.simulator = Broken()

    async def play():
        instance = await interaction.start_interaction(None, seed=1)
        done, answer, score, meta = await interaction.generate_response(instance, [{"role": "assistant", "content": "Tell me more."}])
        with pytest.raises(RuntimeError, match="simulator error"):
            await interaction.calculate_score(instance)
        return done, answer, score, meta

    done, answer, score, meta = asyncio.run(play())
    assert done and score is None and meta["outcome"] == "error" and "endpoint is down" in meta["error"]
    with pytest.raises(ValueError, match="unknown SageInteraction config"):
        sage_verl.SageInteraction({"max_turn": 3})
