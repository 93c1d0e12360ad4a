"""The whole-message checks (`sage_gym.simulators.coherence`): each rule fires on its documented
example, fluent replies a person would write fire none, and the built-in user scores them as before."""

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sage_gym.simulators.base import Rules
from sage_gym.simulators.builtin import assess, detect_strategies
from sage_gym.simulators.coherence import (
    LANGUAGES,
    has_repeated_ngram,
    is_salad,
    is_spliced,
    is_truncated,
    language_for,
    reply_quality,
    reused_share,
)
from tests.conftest import make_scenario

DOC = (Path(__file__).resolve().parents[1] / "docs" / "builtin_simulator.md").read_text()

EARLIER = (
    "It sounds like the whole thing with the landlord has left you feeling exhausted. No wonder this is weighing on you.",
    "Eleven years is a long time. What has been the hardest part of it for you?",
)
# (flag, reply, earlier replies): the examples docs/builtin_simulator.md shows for each rule
RULE_EXAMPLES = [
    ("spliced", "I can imagine how hard the your reaction is understandable.", ()),
    ("spliced", "It took real strength to keep going with the Maybe they were under pressure.", ()),
    ("spliced", "You did nothing wrong with the. It makes sense that the lease is still on your mind.", ()),
    ("spliced", "No wonder this is weighing on you. wrong with the insurance, and it was messy for everyone.", ()),
    ("spliced", "Two things can be true at the same time what do you were hurt by the lease.", ()),  # found by the learner
    ("repetitive", "Not everyone would have stuck with it like you did with it like you did with the speech.", ()),
    ("repetitive", "Maybe imagine how it landed on your reaction is not your reaction is understandable.", ()),
    ("truncated", "It sounds like the landlord has left you feeling exhausted. Anyone in your place would", ()),
    ("truncated", "That must have been really hard, especially the", ()),
    ("reused", "No wonder this is weighing on you. What has been the hardest part of it for you?", EARLIER),
    (
        "stacked",
        "It sounds like the lease has left you exhausted. Not everyone would have stuck with it like you did. "
        "You could try asking the landlord for a year in writing. Maybe he was under pressure from the bank.",
        (),
    ),
]

# fluent replies a person would write, with 1-3 strategies each: no rule may fire on them
NATURAL = [
    "Eleven years, and it ended with a text message? That sounds crushing. It makes sense that you feel discarded.",
    "I'm really sorry about the bakery. Losing a place you built with your own hands is a kind of grief, and it's okay "
    "to feel angry at how it was done. What has been the hardest part so far?",
    "That was a lot to carry on your own. You kept the shop open through two bad winters - that took real courage. "
    "How are you holding up tonight?",
    "It sounds like the landlord didn't even give you the decency of a phone call. No wonder you're furious. If you "
    "want, we could think through what to say to your apprentice.",
    "Honestly, I'd be shaken too. You called three landlords this week, which says a lot about how much the bakery "
    "means to you. What would feel like a small win right now?",
    "You could try asking the landlord for the sale date in writing, so you know exactly how long you have. Then list "
    "the two or three spaces you'd actually consider. Does that feel doable this week?",
    "Maybe the landlord was under pressure from the bank and took the easy way out. It doesn't make the text any less "
    "cold, though. What do you make of it?",
    "I hear you. Eleven years is not something you just walk away from, and the way it ended wasn't fair to you.",
    "On one hand, he had the legal right to sell. On the other hand, how he told you was careless, and you're allowed "
    "to be hurt by that.",
    "Looking back, what do you think you'd want to do differently next time a lease comes up? I'm asking because you "
    "clearly learn fast.",
    "that sounds really rough, I'm sorry",
    "I don't know what to say... I'm so sorry. That's a lot to lose at once.",
    "Did you tell Maya what happened at The Old Mill? She was there when you first signed the lease, wasn't she?",
    "It's not your fault. You did what anyone who cared about their shop would have done, and you did it well.",
    "What you did for your apprentice, telling her face to face, was kind. Not everyone would have done that.",
    "I wonder if what hurts most is that he never asked what the bakery meant to you. Is that close?",
    "Oh no. I'm so sorry, that's awful 😔",
    "hey. I'm sorry. that sucks",
    "I just... you know. It hurts to watch, e.g. the way he packed the ovens.",
    'Sorry. "it is what it is" is what he said? That is cold.',
    "The lease ended because of it's sale, not because of you.",
    'He really said "it\'s just business"? After eleven years?',
]
HISTORY = [{"role": "user", "content": "So that's it, the bakery's done. Eleven years, gone by text message. The landlord sold."}]


@pytest.mark.parametrize("flag, reply, earlier", RULE_EXAMPLES)
def test_each_rule_fires_on_its_documented_example(flag, reply, earlier):
    assert flag in reply_quality(reply, earlier, detect_strategies(reply)).flags
    assert reply in DOC, "docs/builtin_simulator.md shows this example"


@pytest.mark.parametrize("flag, reply, earlier", RULE_EXAMPLES)
def test_each_flag_costs_emotion_in_the_builtin_user(flag, reply, earlier):
    history = [*HISTORY]
    for e in earlier:
        history += [{"role": "assistant", "content": e}, {"role": "user", "content": "Yeah."}]
    judged = assess(make_scenario(), Rules(), 40, len(earlier), 3, history, reply)
    assert flag in judged.features.flags and judged.score < 0 and judged.goal != "met"


@pytest.mark.parametrize("reply", NATURAL)
def test_fluent_replies_are_not_flagged_and_score_as_without_the_rules(reply):
    assert not reply_quality(reply, (), detect_strategies(reply)).flags
    assert not has_repeated_ngram(reply) and not is_spliced(reply) and not is_truncated(reply) and not is_salad(reply)
    scenario = make_scenario()
    without_rules = dataclasses.replace(scenario, language="und")  # a language the rules do not know: skipped
    assert assess(scenario, Rules(), 40, 0, 3, HISTORY, reply) == assess(without_rules, Rules(), 40, 0, 3, HISTORY, reply)


def test_the_detector_api():
    assert has_repeated_ngram("a b c d and a b c d") and not has_repeated_ngram("a b c d and a b c e")
    assert has_repeated_ngram("you did it you did it", n=3) and not has_repeated_ngram("you did it you did it", n=4)
    assert reused_share("No wonder this is weighing on you.", EARLIER) == 1.0
    assert reused_share("No wonder this is weighing on you.", ()) == 0.0
    quality = reply_quality("I can imagine how hard the your reaction is understandable.")
    assert quality.salad and quality.splices == ("the your",) and is_salad("I can imagine how hard the your reaction is understandable.")
    assert not is_truncated("I'm so sorry. That sounds awful 😔") and is_truncated("I'm so sorry. That sounds awful and")
    assert not reply_quality("The landlord told me by text.").salad
    assert not reply_quality("", ()).flags


def test_languages_plug_in_by_code():
    assert language_for("en") is LANGUAGES["en"]
    with pytest.raises(ValueError, match="no coherence rules for language 'xx'"):
        reply_quality("hello there", language="xx")


# finished replies of 2+ sentences by a writer who starts sentences with capitals (not only with "I")
_sentence = st.sampled_from(
    [r for r in NATURAL if r[-1] in ".?!" and re.search(r"[.?!] ", r) and re.search(r"(?:^|[.!?] )(?!I\b|I')[A-Z]", r)]
)


@given(_sentence, st.integers(0, 30), st.integers(4, 8))
def test_a_span_said_twice_is_repetitive(reply, start, length):
    words = reply.split()
    if len(words) < length:
        return
    i = start % (len(words) - length + 1)
    stuttered = " ".join(words[: i + length] + words[i : i + length] + words[i + length :])
    assert "repetitive" in reply_quality(stuttered).flags


@given(_sentence, st.floats(0.0, 1.0))
def test_cut_inside_the_last_sentence_is_truncated(reply, at):
    words = reply.split()
    last_start = max(i + 1 for i, w in enumerate(words[:-1]) if w[-1] in ".?!")  # _sentence replies have 2+ sentences
    cut = last_start + 1 + int(at * (len(words) - last_start - 2))  # keep 1 .. all-but-one words of the last sentence
    assert is_truncated(" ".join(words[:cut]))
