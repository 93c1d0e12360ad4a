"""The calibrated built-in user (SageDialogue-v1's default) and its fit on SAGE's recorded judgments."""

from __future__ import annotations

import builtins
import json
import lzma

import gymnasium as gym
import numpy as np
import pytest

import sage_gym  # noqa: F401  (registers the environments)
from agents.eval.independent import make_independent_agent
from sage_gym.calibrate import HELD_OUT_JUDGE, fit as calibration_fit, load_vendored, summarize
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, calibrated, coherence, make_simulator, sentence_breaks
from sage_gym.simulators.base import Rules, UserState
from sage_gym.simulators.builtin import react_sync
from sage_gym.simulators.reply_value import Bank, ReplyValueModel, shipped_model


def test_versions_are_selectable_and_manifests_differ():
    latest, legacy = make_simulator("builtin-v1"), make_simulator("builtin")
    assert (latest.version, legacy.version) == (1, 0)
    assert latest.manifest()["version"] == 7 and "calibration" in latest.manifest() and latest.manifest()["fitted"]["parts"] == calibrated.shipped_weights().parts
    assert legacy.manifest() == {"kind": "builtin", "model": "sage_gym.builtin", "version": 1, "noise_std": 0.2}
    with pytest.raises(ValueError, match="version"):
        BuiltinSimulator(version=7)


def test_the_env_picks_its_user():
    v0 = gym.make("SageDialogue-v0", scenarios="eval")
    assert v0.unwrapped.simulator.version == 0
    assert gym.make("SageDialogue-v0", scenarios="eval", simulator="builtin-v1").unwrapped.simulator.version == 1
    assert sage_gym.ENV_ID == "SageDialogue-v0"


def test_shipped_files_name_their_source_and_load():
    weights = calibrated.shipped_weights()
    assert "deepseek-v3" in weights.source and set(weights.parts) == set(calibrated.PARTS)
    model = shipped_model()
    assert "deepseek-v3" in model.source and model.k == 30


def _first_reply_change(scenario, reply, version):
    state = UserState(emotion=40, rules=Rules(), turn=0, seed=3)
    return react_sync(scenario, state, [{"role": "user", "content": scenario.first_message}], reply, version).change


def test_a_long_careful_chinese_reply_is_not_punished_for_its_length():
    """The rule-based user flagged 77% of GPT-4.1's replies too long; SAGE's users liked them."""
    dialogues = [d for d in load_vendored() if d.model == "gpt-4.1"][:30]
    v0 = [_first_reply_change(d.scenario, d.turns[0].reply, 0) for d in dialogues]
    v1 = [_first_reply_change(d.scenario, d.turns[0].reply, 1) for d in dialogues]
    assert np.mean(v1) > np.mean(v0)
    assert np.mean(v1) > 0


def test_reply_value_reads_both_languages_through_one_embedding():
    """Fitted on Chinese judgments only, the value transfers to English through the shared space:
    a reply about what the user said beats a brush-off in both languages; an empty reply is 0."""
    model = shipped_model()
    cases = {
        "en": ("My sister stopped talking to me after I missed her wedding, and I feel awful.",
               "Missing her wedding must weigh on you, and her silence makes it hurt even more. What happened that day?",
               "Whatever. People get over things. Move on."),
        "zh": ("我错过了姐姐的婚礼，她现在都不理我了，我心里特别难受。",
               "错过姐姐的婚礼一定让你很自责，她的沉默更让你难受。那天发生了什么？",
               "随便吧，过段时间就好了，别想了。"),
    }
    for said, caring, brushing_off in cases.values():
        history = [{"role": "user", "content": said}]
        assert model.value(caring, history) > model.value(brushing_off, history)
    assert model.value("", [{"role": "user", "content": "anything"}]) == 0.0


def test_a_later_reply_is_valued_from_later_replies_only():
    """An invitation to tell the story earns what first replies like it earned on the first turn,
    and what later replies like it earned after: a later reply never takes a first reply's value."""
    first, later = np.array([[0.9, 0.1], [0.9, 0.3]], dtype=np.float32)
    vectors = np.stack([first / np.linalg.norm(first), later / np.linalg.norm(later)])
    said = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    bank = Bank(vectors, said, changes=np.array([8.0, -4.0]), before=np.array([40.0, 40.0]), models=np.array(["a", "b"]), turns=np.array([0, 3]))
    model = ReplyValueModel(k=1, momentum_weight=0.0, topical_weight=0.0, mean_value=0.0, source="test")
    reply = np.array([[1.0, 0.0]], dtype=np.float32)
    assert model.values_of(reply, said[:1], np.array([0]), bank)[0] == 8.0  # the nearest of all: the first reply
    assert model.values_of(reply, said[:1], np.array([2]), bank)[0] == -4.0  # the nearest later reply


def test_a_reply_about_nothing_the_user_said_costs_on_the_calibrated_user():
    """`ignored` (no word of the user's taken up) is a guard of the calibrated user, as the user's
    own words already said ("That's not really what I was talking about"); SAGE's users gave such
    replies -1.2 a reply against +0.3 on average. A Chinese reply that repeats a phrase of common
    characters (小点声) takes up the user's words, which the rule-based user's bigram check misses."""
    english = load_split("eval")[0]
    opening = [{"role": "user", "content": english.first_message}]
    _, flags = calibration_fit.builtin.calibrated_parts(english, opening, "It rained all afternoon, and the streets are still wet.", 0.0)
    assert "ignored" in flags

    def change(flags: frozenset[str]) -> float:
        rules = calibration_fit.builtin
        return calibrated.expected_change({"reply_value": 0.5}, flags, calibrated.shipped_weights(), rules.FLAG_PENALTY, rules.EXTRA_FLAG_PENALTY)

    assert change(flags) < change(frozenset()) - 3
    chinese = load_split("eval-zh")[0]
    said = [{"role": "user", "content": "我就说了一句能不能小点声，第二天她们就建了个小群。"}]
    quoting = "你只是说了一句能不能小点声，难怪这件事一直在你心里。"
    assert "ignored" not in calibration_fit.builtin.calibrated_parts(chinese, said, quoting, 0.0)[1]
    assert "ignored" in calibration_fit.builtin.analyse_reply(chinese, said, quoting).flags  # the rule-based user's reading, unchanged


def test_the_users_sentences_cut_up_and_rejoined_are_echoed_and_cost():
    """SmolLM2 trained against the rule-based user learned to say the user's sentences back, cut up
    and rejoined; no run of 8 of its words was the user's, so the calibrated user paid for it. Now
    most of its word pairs being the user's is `echoed`; a reflection in the listener's own words
    is not, and none of SAGE's frontier replies is."""
    scenario = load_split("eval")[0]
    said = [{"role": "user", "content": "Let's not make a thing of it. Rhys started at the council in April. That's when it all began."}]
    parrot = "Rhys started at the council in April, and then it all began."
    reflection = "So it started once Rhys took the council job in the spring. What changed for you then?"
    parts = calibration_fit.builtin.calibrated_parts
    assert "echoed" in parts(scenario, said, parrot, 0.0)[1]
    assert "echoed" not in parts(scenario, said, reflection, 0.0)[1]
    state = UserState(emotion=40, rules=Rules(), turn=1, seed=3)
    assert react_sync(scenario, state, said, parrot, 1).change < react_sync(scenario, state, said, reflection, 1).change
    assert not [e for e in calibration_fit.examples(load_vendored()[::5]) if "echoed" in e.flags]


# (split, what the user said, a reply that says it back, a reply that listens): the echo's two rules
ECHO_CASES = {
    # a long clause quoted inside a reply of the agent's own, in its own voice, is listening (until
    # version 6 a run of 8 of the user's words covering 30% of a reply was `echoed`, which cost the
    # independent listener 18 points over whole dialogues); with little of its own around it, an echo
    "clause in the agent's voice": (
        "eval",
        "So I filed the police report at seven in the morning, before the shop even opened.",
        "You filed the police report at seven in the morning, before the shop even opened. Okay.",
        "That's quite something: you filed the police report at seven in the morning. I wonder if you're feeling weighed down. Which part of it keeps coming back to you?",
    ),
    "clause in the agent's voice, zh": (
        "eval-zh",
        "我就说了一句能不能小点声，第二天她们就建了个小群，把我一个人排除在外。",
        "第二天她们就建了个小群，把我一个人排除在外。嗯。",
        "第二天她们就建了个小群，这种被排除在外的感觉一定很难受。你当时心里最放不下的是哪一部分？",
    ),
    # version 6 freed the quoted clause, and a search attack then said the user's sentences as its
    # own inside its text: a run in the user's first person is `echoed` again, in quotation marks not
    "sentence in the user's first person": (
        "eval",
        "I keep going round in circles about who's really in the wrong here. Everyone acts like it's simple.",
        "Setting aside one small. I keep going round in circles about who's really in the wrong here. And it sounds like you're carrying a lot?",
        "So you keep going round in circles about who's really in the wrong here, and that's not a small thing. What's been the hardest part?",
    ),
    "sentence in the user's first person, zh": (
        "eval-zh",
        "说真的，我干嘛要说这些。我做的就是谁在那个位置都会做的事。",
        "我做的就是谁在那个位置都会做的事。也许你现在挺压抑的。身边有人知道这件事吗？",
        "“我做的就是谁在那个位置都会做的事”，你这句话让我想了一会儿。也许你现在挺压抑的。身边有人知道这件事吗？",
    ),
}


@pytest.mark.parametrize("split, said, echo, listening", list(ECHO_CASES.values()), ids=list(ECHO_CASES))
def test_the_users_words_said_back_are_an_echo_and_quoting_them_while_listening_is_not(split, said, echo, listening):
    scenario = load_split(split)[0]
    history = [{"role": "user", "content": said}]
    assert "echoed" in calibration_fit.builtin.calibrated_parts(scenario, history, echo, 0.0)[1]
    assert "echoed" not in calibration_fit.builtin.calibrated_parts(scenario, history, listening, 0.0)[1]


def test_the_calibrated_user_objects_only_to_what_it_prices():
    """A sentence said twice in one reply (`repetitive`, in 30% of SAGE's frontier replies) is not
    priced by the calibrated user, so it does not say "You just said that twice" while its emotion
    rises; the rule-based user, which prices it, says so. Both list the flag in their analysis."""
    scenario = load_split("eval")[0]
    opening = [{"role": "user", "content": scenario.first_message}]
    reply = "That insurance letter sounds awful. That insurance letter sounds awful. What did the adjuster say about the alarm log?"
    lines = ("You just said that twice.", "Are you even listening to yourself?")
    state = UserState(emotion=40, rules=Rules(), turn=0, seed=3)
    rule_based, calibrated_user = (react_sync(scenario, state, opening, reply, version) for version in (0, 1))
    assert "repetitive" in rule_based.analysis["flags"] and "repetitive" in calibrated_user.analysis["flags"]
    assert rule_based.change < 0 and any(line in rule_based.reply for line in lines)
    assert calibrated_user.change > 0 and not any(line in calibrated_user.reply for line in lines)


def opened_files(monkeypatch) -> list[str]:
    """From now until `monkeypatch.undo()`, the path of every file opened (plain or xz), in order."""
    opened: list[str] = []
    real_lzma_open, real_open = lzma.open, builtins.open

    def spy_lzma(path, *args, **kwargs):
        opened.append(str(path))
        return real_lzma_open(path, *args, **kwargs)

    def spy_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lzma, "open", spy_lzma)
    monkeypatch.setattr(builtins, "open", spy_open)
    return opened


def test_fitting_never_opens_the_held_out_judge(monkeypatch):
    """The fit reads the DeepSeek-V3 judge only: no GPT-4o file is opened, and its dialogues are refused."""
    opened = opened_files(monkeypatch)
    dialogues = [d for d in load_vendored() if d.model in ("gpt-4.1", "qwen2.5-72b")][:24]
    items = calibration_fit.examples(dialogues)
    weights = calibration_fit.fit_weights(items, np.zeros(len(items)), "test")
    assert set(weights.parts) == set(calibrated.PARTS)
    assert opened and not any(HELD_OUT_JUDGE in p for p in opened)
    monkeypatch.undo()
    held_out = load_vendored(judge=HELD_OUT_JUDGE)[:2]
    with pytest.raises(ValueError, match="deepseek-v3"):
        calibration_fit.examples(held_out)


def test_fit_orders_a_better_model_above_a_worse_one_on_the_fitting_data():
    """A small fit (two models) through the public pieces: the model SAGE scores higher gains more."""
    dialogues = [d for d in load_vendored() if d.model in ("gpt-4.1", "qwen2.5-72b")][:60]
    items = calibration_fit.examples(dialogues)
    fitted = calibration_fit.fit(items)
    changes = iter(calibration_fit.predicted_change(e, fitted.reply_value.value(e.turn.reply, e.turn.history), fitted.weights) for e in items)
    per_dialogue = [[next(changes) for _ in d.turns] for d in dialogues]
    m = summarize(dialogues, per_dialogue, bootstrap=10)
    rows = {r.model: r for r in m.models}
    assert rows["gpt-4.1"].our_change > rows["qwen2.5-72b"].our_change


def test_weights_file_round_trips():
    weights = calibrated.shipped_weights()
    again = calibrated.Weights.from_json(json.loads(json.dumps(weights.to_json())))
    assert again == calibrated.Weights.from_json(weights.to_json())


@pytest.mark.slow
def test_calibrate_fit_reproduces_the_shipped_files(tmp_path):
    """`python -m sage_gym.calibrate fit` on the vendored data writes exactly what ships (minutes)."""
    from importlib import resources

    from sage_gym.calibrate.__main__ import main

    assert main(["fit", "--out", str(tmp_path)]) == 0
    shipped = resources.files("sage_gym.simulators").joinpath("data")
    for name in ("builtin_v1.json", "reply_value.json.gz"):
        assert (tmp_path / name).read_bytes() == shipped.joinpath(name).read_bytes(), name


def test_a_sentence_of_the_other_language_is_noticed_and_frontier_replies_are_not_flagged():
    """`mixed_language`: a minority of the other language is a guard flag in both languages (the
    rule-based user reads the majority only); SAGE's frontier replies almost never raise it."""
    english, chinese = load_split("eval")[0], load_split("eval-zh")[0]
    replies = {
        english: ("That sounds really hard, and it makes sense you feel worn out.", " 我昨天去超市买了两斤苹果。"),
        chinese: ("听起来真的很难受，你会累也很正常。", "I went to the store yesterday and bought some apples."),
    }
    for scenario, (reply, other_language) in replies.items():
        opening = [{"role": "user", "content": scenario.first_message}]
        assert "mixed_language" in calibration_fit.builtin.calibrated_parts(scenario, opening, reply + other_language, 0.0)[1]
        assert "mixed_language" not in calibration_fit.builtin.calibrated_parts(scenario, opening, reply, 0.0)[1]
    flagged = [e for e in calibration_fit.examples(load_vendored()[::10]) if "mixed_language" in e.flags]
    assert len(flagged) <= 2


def test_a_chinese_sentence_broken_where_no_frontier_model_breaks_one_is_spliced():
    """In Chinese, a sentence that ends inside a word (放不。) or starts inside one (。候) raises
    `spliced` on the calibrated user, whatever mark ends it, and a reply that stops on a comma
    `truncated`; whole sentences, and nearly all of the held-out judge's frontier replies, do not."""
    scenario = load_split("eval-zh")[0]
    opening = [{"role": "user", "content": scenario.first_message}]
    whole = "听起来你最近真的很累。能和我说说，晚上最吵的时候一般是几点吗？"
    for broken in ("你一直放不。也许她们也有自己的压力？", "一定很无助。你一定？候你心里在想什么？"):
        assert sentence_breaks.broken_boundary(broken) is not None
        assert "spliced" in calibration_fit.builtin.calibrated_parts(scenario, opening, broken, 0.0)[1]
    assert sentence_breaks.broken_boundary(whole) is None
    assert not {"spliced", "truncated"} & calibration_fit.builtin.calibrated_parts(scenario, opening, whole, 0.0)[1]
    assert "truncated" in calibration_fit.builtin.calibrated_parts(scenario, opening, "听起来你最近真的很累，再当面说清楚，", 0.0)[1]
    # a frontier reply the word-list checks called spliced (的过… read as a broken pair) is whole here
    frontier = "我能感受到你对这段感情的过往还有很多放不下的地方。你愿意多说说吗？"
    assert "spliced" not in calibration_fit.builtin.calibrated_parts(scenario, opening, frontier, 0.0)[1]
    held_out = [turn.reply for dialogue in load_vendored(judge=HELD_OUT_JUDGE) for turn in dialogue.turns]
    assert sum(sentence_breaks.broken_boundary(reply) is not None for reply in held_out) / len(held_out) < 0.015


def test_an_english_fragment_cut_short_and_punctuated_is_truncated():
    """A search attack won against version 6 with trimmed fragments closed by a full stop, in lower
    case ("hearing about the.") or not; an English reply whose last sentence ends on a determiner
    or a conjunction is `truncated` on the calibrated user, whatever mark closes it, and costs. The
    agents written without reading the rules never end a reply that way; the rule-based user's
    reading is unchanged (its figures are published)."""
    scenario = load_split("eval")[0]
    said = [{"role": "user", "content": "The adjuster says the alarm wasn't armed. I armed it. I arm it every night since 2015."}]
    whole = "You armed it every night, and now they say you didn't. That sounds maddening. What did the adjuster go on?"
    parts = calibration_fit.builtin.calibrated_parts
    assert "truncated" not in parts(scenario, said, whole, 0.0)[1]
    for cut in ("it rained all afternoon. don't worry. i completely agree with you about the adjuster. hearing about the.",
                "You armed it every night. That sounds maddening, and.",
                "So the alarm keeps coming back. I completely agree with you about the?"):
        assert "truncated" in parts(scenario, said, cut, 0.0)[1], cut
        assert "truncated" not in calibration_fit.builtin.analyse_reply(scenario, said, cut).flags
    state = UserState(emotion=40, rules=Rules(), turn=1, seed=3)
    kept, cut = "You armed it every night. That sounds maddening. What did the adjuster go on?", "You armed it every night. That sounds maddening. What did the."
    assert react_sync(scenario, state, said, cut, 1).change < react_sync(scenario, state, said, kept, 1).change
    for name in ("listener", "long_careful", "warmth"):
        agent = make_independent_agent(name, seed=0)
        history = list(said)
        for _ in range(4):
            reply = agent(history)
            assert not coherence.ends_on_unfinished_word(reply, "en"), reply
            history += [{"role": "assistant", "content": reply}, {"role": "user", "content": "I don't know. It's all a mess."}]


def test_the_sentence_counts_read_the_fitting_judge_only(monkeypatch):
    sentence_breaks.frontier_counts.cache_clear()
    opened = opened_files(monkeypatch)
    counts = sentence_breaks.frontier_counts()
    monkeypatch.undo()
    assert opened and not any(HELD_OUT_JUDGE in p for p in opened)
    assert counts.chars["的"] > 10_000  # millions of characters of frontier Chinese
