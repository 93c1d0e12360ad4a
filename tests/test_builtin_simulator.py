"""The built-in simulated user: conditioning on intention and character, anti-gaming, determinism."""

import asyncio

import numpy as np
import pytest

from agents.replies.baselines import make_reference_agent
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, Rules, UserState
from sage_gym.simulators.base import emotion_bucket, emotion_grade
from sage_gym.simulators.builtin import analyse_reply, react_sync
from tests.conftest import make_scenario

HISTORY = ({"role": "user", "content": "So that's it, the bakery's done. Eleven years, gone by text message."},)
EMPATHIC = "Eleven years, and it ended with a text message? That sounds crushing. It makes sense that you feel discarded."
ADVICE = "You could try asking a lawyer to review the bakery lease, and one step might be to list other buildings this week."


def change_for(reply, intention="venting", character="negative", history=HISTORY, emotion=40, seed=3):
    scenario = make_scenario(intention=intention, character=character)
    turn = sum(m["role"] == "assistant" for m in history)
    return react_sync(scenario, UserState(emotion=emotion, rules=Rules(), turn=turn, seed=seed), history, reply)


@pytest.mark.parametrize(
    "reply, strategy",
    [
        (EMPATHIC, "reflect"),
        (EMPATHIC, "validate"),
        (ADVICE, "advice"),
        ("Maybe the landlord was under pressure from the bank about the building.", "motives"),
        ("It's not your fault the bakery closed; you did nothing wrong.", "no_blame"),
        ("Keeping the bakery going for eleven years took real courage. I admire that.", "praise"),
        ("Looking back at the bakery, what do you think it taught you?", "reflection"),
        ("On one hand the landlord had rights; on the other hand, a text is cold.", "dialectic"),
        ("Just get over it, it's not a big deal.", "dismiss"),
        ("Everything happens for a reason, cheer up.", "platitude"),
        ("What happened when you told your apprentice?", "question"),
    ],
)
def test_strategies_are_detected(reply, strategy):
    assert strategy in analyse_reply(make_scenario(), HISTORY, reply).strategies


def test_reply_depends_on_hidden_intention():
    assert change_for(ADVICE, "concrete_advice").change > change_for(ADVICE, "venting").change
    assert change_for(EMPATHIC, "venting").change > change_for(ADVICE, "venting").change


def test_harmful_replies_lose_emotion():
    for reply in ("That's your own fault, you should have read the lease.", "Calm down, it's not a big deal. Move on."):
        assert change_for(reply).change < 0


def test_character_type_matters():
    # avoidant users bristle at a barrage of questions; passive users welcome an open question
    barrage = "What happened with the bakery? How did the landlord tell you? Why a text? When did you find out?"
    assert change_for(barrage, character="avoidant").analysis["flags"].count("pushy") == 1
    assert change_for(barrage, character="avoidant").change < change_for(barrage, character="passive").change


@pytest.mark.parametrize("bad", ["", "ok", "word " * 400])
def test_empty_short_and_very_long_replies_lose(bad):
    assert change_for(bad).change < 0


def test_repeating_a_reply_is_punished():
    history = HISTORY + ({"role": "assistant", "content": EMPATHIC}, {"role": "user", "content": "Yeah. Eleven years."})
    repeated = change_for(EMPATHIC, history=history)
    assert "repeated" in repeated.analysis["flags"]
    assert repeated.change < change_for(EMPATHIC).change


def test_ignoring_the_user_is_punished():
    off_topic = "It sounds like you're feeling frustrated. That makes sense."
    judged = change_for(off_topic)
    assert "ignored" in judged.analysis["flags"]
    assert judged.change < change_for(EMPATHIC).change


def test_keyword_stuffing_is_punished():
    stuffed = make_reference_agent("keyword_stuffer")(list(HISTORY))
    judged = change_for(stuffed)
    assert "formulaic" in judged.analysis["flags"] and judged.change < 0


def test_same_seed_same_reaction_and_state_is_untouched():
    state = UserState(emotion=40, rules=Rules(), seed=11)
    a = change_for(EMPATHIC, seed=11)
    b = change_for(EMPATHIC, seed=11)
    assert a == b
    assert state == UserState(emotion=40, rules=Rules(), seed=11)


def test_reaction_is_consistent():
    r = change_for(EMPATHIC, emotion=95)
    assert 0 <= r.emotion <= 100 and r.state.emotion == r.emotion and r.bucket == emotion_bucket(r.emotion)
    assert r.change in (-10, -5, 0, 5, 10)
    assert r.thoughts and r.reply


def test_change_is_clipped_to_the_rules():
    scenario = make_scenario()
    rules = Rules(change_clip=(-3, 3))
    r = react_sync(scenario, UserState(emotion=40, rules=rules), HISTORY, "Get over it, it's your own fault.")
    assert r.change == -3 and r.emotion == 37


def test_goodbye_at_the_thresholds():
    scenario = make_scenario()
    up = react_sync(scenario, UserState(emotion=95, rules=Rules()), HISTORY, EMPATHIC)
    assert up.emotion == 100 and up.leaves and "bye" in up.reply.lower()
    down = react_sync(scenario, UserState(emotion=12, rules=Rules()), HISTORY, "Get over it, it's your own fault.")
    assert down.emotion < 10 and down.leaves


@pytest.mark.parametrize("emotion, bucket, grade", [(100, "high", "S"), (70, "high", "A"), (69, "medium", "B"), (40, "medium", "B"), (39, "low", "C"), (10, "low", "C"), (9, "low", "F"), (0, "low", "F")])
def test_buckets_and_grades(emotion, bucket, grade):
    assert emotion_bucket(emotion) == bucket and emotion_grade(emotion) == grade


def test_open_draws_the_seed_from_the_generator():
    sim = BuiltinSimulator()
    a = asyncio.run(sim.open(make_scenario(), np.random.default_rng(5), Rules(initial_emotion=30)))
    b = asyncio.run(sim.open(make_scenario(), np.random.default_rng(5), Rules(initial_emotion=30)))
    assert a == b and a.emotion == 30


def _mean_final_emotion(agent_name, scenarios):
    import gymnasium as gym

    env = gym.make("SageDialogue-v0", scenarios=scenarios)
    finals = []
    for i, scenario in enumerate(scenarios):
        agent = make_reference_agent(agent_name, seed=i)
        obs, info = env.reset(seed=i, options={"scenario_id": scenario.id})
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent(info["history"]))
            done = terminated or truncated
        finals.append(info["emotion"])
    return float(np.mean(finals))


def test_reference_agent_ordering_over_the_shipped_scenarios():
    """The acceptance test of the built-in simulator: empathic > solution-only > dismissive, and
    stuffing empathy keywords does not beat real empathy."""
    scenarios = load_split("eval")
    score = {name: _mean_final_emotion(name, scenarios) for name in ("empathic", "solution", "dismissive", "keyword_stuffer")}
    assert score["empathic"] > score["solution"] + 10, score
    assert score["solution"] > score["dismissive"] + 5, score
    assert score["keyword_stuffer"] < score["empathic"], score


def test_docs_show_the_current_weight_table():
    from pathlib import Path

    from sage_gym.simulators.builtin import weight_table_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "builtin_simulator.md").read_text()
    assert weight_table_markdown() in doc


def test_scores_do_not_depend_on_the_hash_seed():
    """Strategy sets iterate in hash-seed order; the score must not (the server runs in another process)."""
    import subprocess
    import sys

    script = (
        "import json\n"
        "from sage_gym.scenarios import load_split\n"
        "from sage_gym.simulators.builtin import assess\n"
        "from sage_gym.simulators.base import Rules\n"
        "reply = 'That sounds exhausting, and it makes sense you feel hurt. Maybe they were scared too. What part weighs on you most?'\n"
        "print(json.dumps([assess(s, Rules(), 40, t, 7, [{'role': 'user', 'content': s.first_message}], reply).score"
        " for s in load_split('eval') for t in range(3)]))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3", "4")
    ]
    assert len(set(runs)) == 1


def test_each_language_module_spells_out_a_lexicon_of_the_same_shape():
    """lexicon_en and lexicon_zh name the same tables with the same keys, so a line or cue missing in
    one language fails here rather than as a KeyError in the middle of a dialogue."""
    from collections.abc import Mapping
    from dataclasses import fields

    from sage_gym.simulators.builtin import LEXICONS, Lexicon, lexicon_en, lexicon_zh
    from sage_gym.simulators.builtin.lexicon import lexicon_of

    assert {lexicon.code for lexicon in LEXICONS.values()} == {"en", "zh"}
    for field in fields(Lexicon):
        en, zh = getattr(LEXICONS["en"], field.name), getattr(LEXICONS["zh"], field.name)
        assert type(en) is type(zh) or callable(en) and callable(zh), field.name
        if isinstance(en, Mapping):
            assert set(en) == set(zh), field.name
    for module in (lexicon_en, lexicon_zh):
        assert lexicon_of(module) == LEXICONS[module.CODE]
