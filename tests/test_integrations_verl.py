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

from agents.replies.baselines import make_reference_agent
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


def test_rows_name_the_agent_loop_that_the_shipped_yaml_registers():
    # without an agent_name (or agent.default_agent_loop) verl runs single_turn_agent: one reply, no interaction
    rows = sage_verl.verl_dataset_rows("eval")
    assert {row["agent_name"] for row in rows} == {"sage_agent"}
    (entry,) = yaml.safe_load(YAML.with_name("verl_agent_loop.yaml").read_text())
    assert entry == {"name": "sage_agent", "_target_": "sage_gym.integrations.verl_agent_loop.SageAgentLoop"}
    assert (YAML.parent / "verl_agent_loop.py").read_text().count("class SageAgentLoop(ToolAgentLoop)") == 1


def play_to_the_end(interaction, instance, first_message):
    async def play():
        agent = make_reference_agent("empathic", seed=0)
        await interaction.start_interaction(instance, scenario_id="train-003", seed=3)
        messages, scores, done = [{"role": "user", "content": first_message}], [], False
        while not done:
            messages.append({"role": "assistant", "content": agent(messages)})
            done, answer, score, _ = await interaction.generate_response(instance, messages)
            messages.append({"role": "user", "content": answer})
            scores.append(score)
        return scores

    return asyncio.run(play())


def test_an_ended_dialogue_frees_its_env_and_live_ones_are_bounded(caplog):
    # verl 0.7 never calls finalize_interaction: an interaction that kept every env grew by one per rollout
    interaction = sage_verl.SageInteraction({"scenarios": "train", "max_turns": 4, "max_live_dialogues": 2})
    first = interaction.scenarios.get("train-003").first_message
    scores = play_to_the_end(interaction, "a", first)
    assert interaction._envs == {}
    assert asyncio.run(interaction.calculate_score("a")) == pytest.approx(sum(scores))  # the return outlives the env

    async def start(*ids):
        for instance in ids:
            await interaction.start_interaction(instance, seed=0)

    with caplog.at_level("WARNING", logger="sage_gym.integrations.verl"):
        asyncio.run(start("b", "c", "d"))  # "b" never ends (verl stopped it on a limit): the oldest goes
    assert list(interaction._envs) == ["c", "d"] and "dropped the oldest (b)" in caplog.text
    asyncio.run(interaction.finalize_interaction("a"))
    with pytest.raises(KeyError, match="start_interaction"):
        asyncio.run(interaction.calculate_score("a"))
    with pytest.raises(ValueError, match="max_live_dialogues"):
        sage_verl.SageInteraction({"max_live_dialogues": 0})


def test_the_reward_function_sums_the_turn_scores_and_counts_unscored_replies():
    from sage_gym.integrations.verl_reward import compute_score

    interaction = sage_verl.SageInteraction({"scenarios": "train", "max_turns": 4})
    scores = play_to_the_end(interaction, "a", interaction.scenarios.get("train-003").first_message)
    # what verl's agent loop and reward loop pass: num_turns = user turns + assistant turns + 1
    every_reply = compute_score("sage_gym", "", "", {"turn_scores": scores, "num_turns": 2 * len(scores) + 1})
    assert every_reply == {"score": pytest.approx(asyncio.run(interaction.calculate_score("a"))), "replies": len(scores), "scored_replies": len(scores), "unscored_replies": 0}
    # verl's plain tool_agent stopped on a limit after one more reply, which the interaction never saw
    last_unscored = compute_score("sage_gym", "", "", {"turn_scores": scores, "num_turns": 2 * len(scores) + 2})
    assert last_unscored["unscored_replies"] == 1 and last_unscored["score"] == pytest.approx(sum(scores))
    with pytest.raises(ValueError, match="turn_scores"):
        compute_score("sage_gym", "", "", {})  # verl's single_turn_agent: no interaction ran
    docs = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    assert "reward.custom_reward_function.path=$SAGE/verl_reward.py" in docs and "default_agent_loop=sage_agent" in docs
