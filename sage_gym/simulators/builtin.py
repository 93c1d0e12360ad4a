"""The built-in deterministic simulated user: rule-based, offline, fast, and hard to game.

It reacts to what the agent actually wrote, conditioned on the scenario's hidden intention and
character type, and it is a *pure function* of (scenario, rules, emotion, turn, seed, visible
history, agent reply): it keeps no hidden memory, so the same inputs give the same reaction in
process and through the local OpenAI-compatible server (`sage_gym.servers.simulator_server`).

How a reply is scored (the full rule table is in docs/builtin_simulator.md):

1. **Strategies.** Regular-expression cues detect what the reply does: reflecting or naming
   feelings, validation, specific praise, open questions, concrete advice, explaining others'
   motives, weighing both sides, guiding reflection, agreeing the user is not to blame,
   self-disclosure; and the harmful ones: blame, dismissal, platitudes. Each strategy counts
   once per reply, however often its cues appear.
2. **Intention.** A table gives each strategy a weight for each of the 8 hidden intentions
   (e.g. advice helps `concrete_advice` and hurts `venting`). The strategy that meets the hidden
   intention counts most; after two turns without it, the user grows impatient.
3. **Character.** Negative users gain less and lose more; passive users warm to open questions
   and tire of long replies; avoidant users bristle at several questions at once and at
   intense feeling-talk early on.
4. **Anti-gaming.** Repeating an earlier reply, stuffing many strategy cues into few words,
   not engaging with anything the user said, and very short or very long replies all cost
   emotion and mute the reply's positive strategies. So does text that is not a whole message
   (`sage_gym.simulators.coherence`): sentences broken off and joined, a phrase said twice,
   lines reused from earlier turns, more than three strategies stacked in one reply, and a
   reply that trails off mid-sentence.
5. **Change.** The score plus a small seeded noise maps to -10, -5, 0, +5 or +10 (then clipped to
   the rules' range); the new emotion is capped to [0, 100].

The user's reply is composed from the scenario (its `details`, told bit by bit), the new emotion
bucket, the character type and what went wrong or right, so a transcript reads like a
conversation.

The user speaks English and Chinese. What they read and say in each language is a `Lexicon`
(`LEXICONS`: the English tables below, the Chinese ones in `sage_gym.simulators.builtin_zh`); the
scoring rules are shared. A reply in the other language gets the flag `wrong_language`, and a
scenario in any other language is refused when a dialogue opens (docs/builtin_simulator.md,
section 9).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from sage_gym.scenarios import Scenario
from sage_gym.simulators import builtin_zh, calibrated, coherence
from sage_gym.simulators.base import Message, Reaction, Rules, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.reply_value import said_before, shipped_model as shipped_reply_value
from sage_gym.simulators.risk import RiskJudgement, judge_risk

# ----------------------------------------------------------------------------------------------
# 1. strategy cues

FEELING_WORDS = (
    "frustrat", "hurt", "exhaust", "angry", "anger", "furious", "lonely", "alone", "ashamed", "shame",
    "overwhelm", "sad", "anxious", "anxiety", "scared", "afraid", "fear", "betray", "disappoint",
    "drained", "heartbr", "invisible", "humiliat", "worried", "worry", "grief", "griev", "pain",
    "resent", "guilt", "helpless", "stuck", "unfair", "dismissed", "unseen", "unheard", "tired",
    "stress", "upset", "devastat", "confus", "embarrass", "jealous", "bitter", "crushed", "torn",
)

STRATEGY_CUES: Mapping[str, tuple[str, ...]] = {
    "reflect": (
        r"\bsounds? like\b", r"\b(that|it|this) sounds\b", r"\bit seems\b", r"\bi hear\b", r"\byou (must|might) (feel|be feeling|be)\b",
        r"\byou('re| are) feeling\b", r"\bthat (must|would|can) (be|have been|feel)\b", r"\bi can (imagine|see|tell)\b",
        r"\bso (you|it was)\b", r"\bwhat i'm hearing\b", r"\byou felt\b",
    ),
    "validate": (
        r"\bmakes (complete |total |a lot of )?sense\b", r"\bunderstandable\b", r"\banyone would\b", r"\bof course you\b",
        r"\bit'?s (okay|ok|normal|natural|fair) to\b", r"\b(valid|legitimate)\b", r"\bno wonder\b", r"\bright to feel\b",
    ),
    "praise": (
        r"\b(took|takes|showed) (real |a lot of )?(courage|guts|strength|care|integrity)\b", r"\bi admire\b",
        r"\byou (did|handled) (that |it |this |so )?(well|right|beautifully)\b", r"\bproud of\b", r"\bimpressive\b",
        r"\bthat was (brave|generous|thoughtful|kind|wise|smart|decent)\b", r"\bwell done\b", r"\bgive yourself credit\b",
        r"\bspeaks (well )?(of|to) (you|your)\b", r"\bnot everyone would\b",
    ),
    "advice": (
        r"\byou (could|can|might) (try|consider|start|ask|talk|write|set|make|look|call|book|plan|bring|put|tell|list|contact|speak)\b",
        r"\btry (to|talking|writing|asking|setting|making)\b", r"\bi('d| would) (suggest|recommend)\b", r"\bsuggest\b",
        r"\bconsider\b", r"\bone (option|step|idea|thing you could)\b", r"\b(first|next|small) step\b", r"\bmake a plan\b",
        r"\bhere'?s what\b", r"\bit (might|may|could) help to\b", r"\bwhat if you\b",
    ),
    "motives": (
        r"\b(maybe|perhaps|possibly) (he|she|they|the \w+|your \w+|his \w+|her \w+|their \w+)\b", r"\b(he|she|they) (might|may|could) (have|be|feel|not|think|worry)\b",
        r"\bfrom (his|her|their) (side|perspective|point of view)\b", r"\b(his|her|their) (reasons?|fear|pressure|own)\b",
        r"\bprobably because\b", r"\bit'?s possible (he|she|they)\b", r"\b(he|she|they) (was|were) (probably|likely)\b",
    ),
    "dialectic": (
        r"\bon the other hand\b", r"\bat the same time\b", r"\bboth sides\b", r"\bthen again\b", r"\bon one hand\b",
        r"\bit'?s not (all|entirely|only|just) (black|one|on|about)\b", r"\bthe flip side\b", r"\btwo things (can be|are) true\b",
        r"\bfrom (one|another) angle\b", r"\bweigh(ing)? (it|both|this)\b",
    ),
    "reflection": (
        r"\blooking back\b", r"\bwhat (do|did) you (think|learn|notice|make of|take)\b", r"\bwhat would you do differently\b",
        r"\bwhat (does|did) (this|that|it) (teach|tell|show|mean to) you\b", r"\bwhat matters (most )?to you\b",
        r"\bwhat part of (this|that|it)\b", r"\b(learn|grow)(ed|ing|s)? from\b", r"\bnext time\b", r"\bwhat (do|would) you want\b",
    ),
    "no_blame": (
        r"\bnot your fault\b", r"\byou did nothing wrong\b", r"\byou('re| are) not to blame\b", r"\byou('ve| have) done nothing wrong\b",
        r"\bnone of (this|that|it) (is|was) on you\b", r"\byou didn'?t deserve\b", r"\b(they|he|she) (was|were) (wrong|out of line)\b",
        r"\byou were right\b", r"\byou had every right\b",
    ),
    "disclosure": (r"\bi('ve| have) (been|felt) (there|through|that)\b", r"\bwhen i was\b", r"\bhappened to me\b"),
    "blame": (
        r"\byour (own )?fault\b", r"\byou should(n'?t| not)? have\b", r"\byou brought (this|it)\b", r"\bwhat did you expect\b",
        r"\byou('re| are) (to blame|overreacting|being (dramatic|silly|sensitive|ridiculous|unreasonable))\b", r"\bpartly on you\b",
    ),
    "dismiss": (
        r"\bget over it\b", r"\bcalm down\b", r"\bmove on\b", r"\bwhatever\b", r"\b(not a|no) big deal\b",
        r"\bstop (complaining|whining)\b", r"\bit could be worse\b", r"\bthat'?s life\b", r"\bothers have it worse\b",
        r"\bdeal with it\b", r"\bgrow up\b", r"\bwho cares\b", r"\bi don'?t care\b",
    ),
    "platitude": (
        r"\beverything happens for a reason\b", r"\btime heals\b", r"\bstay positive\b", r"\blook on the bright side\b",
        r"\bcheer up\b", r"\bit'?ll (all )?be (fine|okay|ok|alright)\b", r"\bdon'?t worry\b", r"\bthings will get better\b",
        r"\bchin up\b", r"\bjust relax\b", r"\bthink positive\b", r"\bit is what it is\b",
    ),
}
_FEELINGS = re.compile(r"\b(?:" + "|".join(FEELING_WORDS) + r")")
_OPEN_QUESTION = re.compile(r"(?:^|[.!?]\s+)(?:what|how|which|when|where|who|why|tell me|could you say|would you say|can you tell)\b[^?]*\?")
_WORD = re.compile(r"[a-z][a-z']*")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each even ever every few for from further had has have having
    he her here hers him his how i if in into is it its just know like me more most my no nor not now of off on once
    only or other our out over own really same she should so some such than that the their them then there these they
    this those through to too under until up very was we were what when where which while who whom why will with would
    you your yours yourself feel feeling felt sounds sound seems think thing things much still maybe perhaps right okay
    yeah well said say tell told get got going make made want wanted way time something anything everything""".split()
)

# ----------------------------------------------------------------------------------------------
# 2. intention table: strategy -> weight, per hidden intention. The first strategy listed in
# KEY_STRATEGY is the one that "meets" the intention.

BASE_WEIGHTS = {
    "reflect": 0.35, "feelings": 0.25, "validate": 0.3, "question": 0.2, "praise": 0.15, "advice": 0.0,
    "motives": 0.0, "dialectic": 0.0, "reflection": 0.05, "no_blame": 0.1, "disclosure": 0.05,
    "blame": -1.5, "dismiss": -1.6, "platitude": -0.7,
}
INTENTION_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "dialectical_analysis": {"dialectic": 1.3, "motives": 0.4, "reflection": 0.2, "advice": 0.1, "no_blame": -0.7},
    "concrete_advice": {"advice": 1.3, "question": 0.1, "reflection": -0.1, "platitude": -0.4},
    "others_motives": {"motives": 1.3, "dialectic": 0.3, "advice": -0.2},
    "self_reflection": {"reflection": 1.3, "question": 0.3, "advice": -0.4, "no_blame": -0.5},
    "specific_praise": {"praise": 1.3, "advice": -0.4, "dialectic": -0.3},
    "venting": {"reflect": 0.55, "feelings": 0.35, "validate": 0.35, "advice": -0.9, "motives": -0.5, "dialectic": -0.6, "question": -0.15},
    "deep_empathy": {"reflect": 0.7, "feelings": 0.55, "validate": 0.15, "platitude": -0.8, "advice": -0.6, "question": -0.05},
    "no_blame": {"no_blame": 1.3, "validate": 0.3, "dialectic": -0.8, "motives": -0.6, "reflection": -0.5, "blame": -1.0},
    "custom": {},
}
KEY_STRATEGY = {
    "dialectical_analysis": "dialectic", "concrete_advice": "advice", "others_motives": "motives",
    "self_reflection": "reflection", "specific_praise": "praise", "venting": "reflect",
    "deep_empathy": "feelings", "no_blame": "no_blame",
}
PATIENCE_TURNS = 2  # turns the user waits for their intention to be met before growing impatient
IMPATIENCE_STEP, IMPATIENCE_CAP = 0.3, 0.9
POSITIVE_MUTE = 0.25  # share of positive weight that survives an anti-gaming flag
# What each anti-gaming flag costs (section 4 of docs/builtin_simulator.md). Every one of them mutes
# the reply's positive cues; several at once cost the largest plus EXTRA_FLAG_PENALTY per further flag.
FLAG_PENALTY = {
    "repeated": 1.2, "formulaic": 1.0, "too_short": 1.0, "ignored": 0.7,
    # the reply judged as a whole message (sage_gym.simulators.coherence)
    "spliced": 1.2, "repetitive": 1.2, "reused": 1.0, "stacked": 1.0, "truncated": 0.8,
    # a reply in a language the user does not speak (English to a Chinese user, or the other way)
    "wrong_language": 1.0,
}
MUTING_FLAGS = frozenset(FLAG_PENALTY)
EXTRA_FLAG_PENALTY = 0.3

# What the user thinks when their intention is met or still missing (first person).
GOAL_MET = {
    "dialectical_analysis": "they're actually weighing it from more than one side",
    "concrete_advice": "that's something I could actually do",
    "others_motives": "that might explain why they acted like that",
    "self_reflection": "that makes me look at my own part in it",
    "specific_praise": "they noticed what I actually did",
    "venting": "they're just letting me get it out",
    "deep_empathy": "they really get how this feels",
    "no_blame": "they see I didn't do anything wrong",
}
GOAL_MISSING = {
    "dialectical_analysis": "nobody is looking at the whole picture",
    "concrete_advice": "I still don't know what to actually do",
    "others_motives": "I still can't make sense of why they did it",
    "self_reflection": "I'm not getting anywhere with myself",
    "specific_praise": "nobody sees the effort I put in",
    "venting": "I can't even finish saying how it is",
    "deep_empathy": "it's all surface-level comfort",
    "no_blame": "it feels like I'm being blamed",
}
# Subtle hints the user drops when the intention is unmet (never stating it outright).
HINTS = {
    "dialectical_analysis": (
        "I keep going round in circles about who's really in the wrong here.",
        "Everyone I ask only sees one side of it.",
        "Part of me thinks they had a point, and that makes it worse.",
        "It's not as simple as everyone makes out.",
    ),
    "concrete_advice": (
        "I honestly don't know where I'd even start.",
        "Talking about it is fine, but tomorrow I still have to face it.",
        "I've got maybe a week before this gets worse.",
        "I just keep freezing when I think about what comes next.",
    ),
    "others_motives": (
        "I keep wondering what was going through their head.",
        "It just doesn't add up, why would anyone do that?",
        "They were never like this before.",
        "I can't work out what I'm missing about them.",
    ),
    "self_reflection": (
        "Sometimes I wonder what this says about me.",
        "I don't want to end up in the same place again.",
        "Maybe there's a pattern here I keep not seeing.",
        "I keep replaying my part in it.",
    ),
    "specific_praise": (
        "I did everything I could, you know. Nobody even noticed.",
        "I worked really hard on that part.",
        "Honestly, I thought I handled that bit pretty well.",
        "It took me weeks to sort that out and nobody said a word.",
    ),
    "venting": (
        "And that's not even the half of it.",
        "Sorry, I just... there's so much of it.",
        "It's been building up for ages.",
        "I haven't said any of this out loud before.",
    ),
    "deep_empathy": (
        "People keep saying 'it'll be fine' and it just makes it worse.",
        "I don't think anyone gets what it's actually like.",
        "It's not something you can just fix.",
        "Everyone's kind, but it all feels far away.",
    ),
    "no_blame": (
        "Everyone acts like I'm the one who messed up.",
        "I did what anyone would have done.",
        "I really don't see what I should have done differently.",
        "And somehow it's all landed on me.",
    ),
}
# ----------------------------------------------------------------------------------------------
# 3. character types


@dataclass(frozen=True)
class Temperament:
    gain: float  # multiplies positive weight
    loss: float  # multiplies negative weight
    bar: float  # raises the thresholds of the change ladder
    question_bonus: float = 0.0
    long_reply_words: int = 160
    pushy_questions: int = 99  # more questions than this in one reply cost emotion


TEMPERAMENTS = {
    "negative": Temperament(gain=0.85, loss=1.3, bar=0.15),
    "passive": Temperament(gain=0.95, loss=1.0, bar=0.05, question_bonus=0.25, long_reply_words=110),
    "avoidant": Temperament(gain=0.9, loss=1.1, bar=0.1, pushy_questions=1),
}

# change ladder: (minimum score, change); scores below the last step give -10
LADDER = ((1.5, 10), (0.5, 5), (-0.3, 0), (-1.2, -5))
# 0: the rule-based user of SageDialogue-v0; 1: the calibrated user (sage_gym.simulators.calibrated)
USER_VERSIONS = (0, 1)
DEFAULT_VERSION = 0  # "builtin"; "builtin-v1" is version 1
NOISE_STD = 0.2


# ----------------------------------------------------------------------------------------------
# text analysis


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


_LATIN_WORD = re.compile(r"[A-Za-z]+")


def reply_language(text: str) -> str | None:
    """The language a reply is written in, as far as the user can tell: "zh" when it has more Han
    characters than Latin words, "en" when it has Latin words, None when it has neither."""
    han, latin = builtin_zh.han_count(text), len(_LATIN_WORD.findall(text))
    if han > latin:
        return "zh"
    return "en" if latin else None


@lru_cache(maxsize=4096)
def _content_words(text: str) -> frozenset[str]:
    """Words that carry the topic: not stopwords, at least 4 letters, crudely de-pluralised."""
    return frozenset(w.rstrip("s") if len(w) > 4 else w for w in words_of(text) if len(w) >= 4 and w not in STOPWORDS)


@lru_cache(maxsize=4096)
def _shingles(text: str, language: str = "en") -> frozenset[tuple[str, ...]]:
    lexicon = lexicon_for(language)
    toks, n = lexicon.shingle_units(text), lexicon.shingle_n
    return frozenset(tuple(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))) if toks else frozenset()


def similarity(a: str, b: str, language: str = "en") -> float:
    """Jaccard similarity of word trigrams (Chinese: character 4-grams); 1.0 for identical non-empty texts."""
    sa, sb = _shingles(a, language), _shingles(b, language)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class ReplyFeatures:
    """What a reply does, independent of the user's emotion (so the server can recompute it)."""

    words: int
    strategies: frozenset[str]
    cue_hits: int
    open_questions: int
    questions: int
    overlap: int  # content words shared with what the user has said
    max_similarity: float  # to the agent's earlier replies
    flags: frozenset[str] = field(default_factory=frozenset)
    splices: tuple[str, ...] = ()  # where the reply reads as sentences broken off and joined


@dataclass(frozen=True)
class _TextFeatures:
    """The part of the analysis that depends on the reply's text alone (cached by text)."""

    words: int
    strategies: frozenset[str]
    cue_hits: int
    open_questions: int
    questions: int


@lru_cache(maxsize=4096)
def _text_features(agent_reply: str, language: str = "en") -> _TextFeatures:
    lexicon = lexicon_for(language)
    text = agent_reply.lower()
    strategies, hits = set(), 0
    for name, any_cue in lexicon.cues.items():
        count = len(any_cue.findall(text))
        if count:
            strategies.add(name)
            hits += count
    feeling_hits = len(lexicon.feelings.findall(text))
    if feeling_hits:
        strategies.add("feelings")
        hits += feeling_hits
    open_q = len(lexicon.open_question.findall(text))
    if open_q:
        strategies.add("question")
    questions = sum(text.count(mark) for mark in lexicon.question_marks)
    return _TextFeatures(len(lexicon.units(text)), frozenset(strategies), hits, open_q, questions)


def detect_strategies(agent_reply: str, language: str = "en") -> frozenset[str]:
    """The strategies the built-in user sees in a reply (its cue table, section 1 of the docs;
    section 9 for Chinese)."""
    return _text_features(agent_reply, lexicon_for(language).code).strategies


def _language(scenario: Scenario) -> str | None:
    """The coherence rules' language for a scenario, or None where none are registered."""
    return scenario.language if scenario.language in coherence.LANGUAGES else None


def _content_units(text: str, language: str) -> frozenset[str]:
    return lexicon_for(language).content(text)


def analyse_reply(scenario: Scenario, history: Sequence[Message], agent_reply: str, long_replies: bool = True) -> ReplyFeatures:
    """What the reply does. `long_replies` flags `too_long` past the character's word limit (the
    rule-based user, version 0; the calibrated user weighs length through its fitted length bins)."""
    lexicon = lexicon_for(scenario.language)
    code = lexicon.code
    earlier = [m["content"] for m in history if m["role"] == "assistant"]
    written_in = reply_language(agent_reply)
    if written_in is not None and written_in != code:
        # a reply in a language the user does not speak: confusion, and nothing in it counts
        n = len(lexicon_for(written_in).units(agent_reply))
        return ReplyFeatures(n, frozenset(), 0, 0, 0, 0, 0.0, frozenset({"wrong_language"}))
    text = _text_features(agent_reply, code)
    n_words, strategies, hits = text.words, text.strategies, text.cue_hits

    said = frozenset().union(*(_content_units(m["content"], code) for m in history if m["role"] == "user"))
    overlap = len(_content_units(agent_reply, code) & said)
    max_sim = max((similarity(agent_reply, e, code) for e in earlier), default=0.0)

    scale = lexicon.length_scale
    flags = set()
    if n_words < lexicon.too_short:
        flags.add("too_short")
    if n_words > 0 and max_sim >= 0.5:
        flags.add("repeated")
    # keyword stuffing: many distinct cues packed into few words, or the same cues over and over
    if n_words and (hits >= 6 and hits * 5 * scale > n_words or len(strategies - {"question", "feelings"}) >= 5 and n_words < 80 * scale):
        flags.add("formulaic")
    if n_words >= lexicon.too_short and overlap == 0:
        flags.add("ignored")
    temper = TEMPERAMENTS[scenario.character_type]
    if text.questions > temper.pushy_questions:
        flags.add("pushy")
    if long_replies and n_words > temper.long_reply_words * scale:
        flags.add("too_long")
    splices: tuple[str, ...] = ()
    language = _language(scenario)
    if language is not None and n_words:
        quality = coherence.reply_quality(agent_reply, earlier, strategies, language)
        flags |= quality.flags
        splices = quality.splices
    return ReplyFeatures(n_words, strategies, hits, text.open_questions, text.questions, overlap, max_sim, frozenset(flags), splices)


# ----------------------------------------------------------------------------------------------
# scoring


def _turn_rng(seed: int, turn: int, agent_reply: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, turn, zlib.crc32(agent_reply.encode("utf-8")), salt])


def _intention_met_before(scenario: Scenario, history: Sequence[Message]) -> int:
    """How many earlier agent replies already met the hidden intention: used its key strategy in
    whole, unrepeated sentences (salad does not count, then or now)."""
    key = KEY_STRATEGY.get(scenario.hidden_intention)
    if key is None:
        return 0
    earlier = [m["content"] for m in history if m["role"] == "assistant"]
    language, code = _language(scenario), lexicon_for(scenario.language).code
    return sum(
        key in detect_strategies(e, code)
        and reply_language(e) in (None, code)
        and (language is None or not coherence.reply_quality(e, (), detect_strategies(e, code), language).flags)
        for e in earlier
    )


@dataclass(frozen=True)
class Assessment:
    change: int
    score: float
    features: ReplyFeatures
    goal: str  # "met", "partly" or "not met"
    thoughts: str
    feeling: str
    meaning: str


def assess(
    scenario: Scenario, rules: Rules, emotion: int, turn: int, seed: int, history: Sequence[Message], agent_reply: str, version: int = DEFAULT_VERSION
) -> Assessment:
    """Score one agent reply: the emotion-update half of a user turn. `version` 1 is the calibrated
    scoring (`sage_gym.simulators.calibrated`), 0 the rule-based one of SageDialogue-v0."""
    if version not in USER_VERSIONS:
        raise ValueError(f"unknown built-in user version {version!r}; expected one of {USER_VERSIONS}")
    feats = analyse_reply(scenario, history, agent_reply) if version == 0 else _calibrated_features(scenario, history, agent_reply)
    temper = TEMPERAMENTS[scenario.character_type]
    read = _read(scenario, feats, history, turn)
    met_now = read.met_now
    noise = _turn_rng(seed, turn, agent_reply, 1).normal(0.0, 1.0)
    if version == 0:
        score = _rule_score(scenario, feats, temper, turn, read)
        raw_change = next((c for low, c in LADDER if score + NOISE_STD * noise >= low + temper.bar), -10)
    else:
        parts, risk, met_now = _calibrated_reading(scenario, read, history, agent_reply, _reply_value(history, agent_reply))
        fitted = calibrated.shipped_weights()
        predicted = calibrated.expected_change(parts, feats.flags, fitted, FLAG_PENALTY, EXTRA_FLAG_PENALTY)
        predicted += calibrated.POINTS_PER_SCORE_UNIT * risk.adjustment
        if risk.ceiling is not None:
            predicted = min(predicted, calibrated.POINTS_PER_SCORE_UNIT * risk.ceiling)
        score = predicted / calibrated.POINTS_PER_SCORE_UNIT  # in the rule-based user's score units, for the analysis
        raw_change = round(predicted + fitted.noise_std * noise)
    change = rules.clip(raw_change)
    goal = "met" if met_now else ("partly" if read.met_before else "not met")
    lexicon = lexicon_for(scenario.language)
    thoughts = _thoughts(scenario, feats, feats.flags, goal, change)
    return Assessment(change, round(score, 4), feats, goal, thoughts, _feeling(change, lexicon), _meaning(feats, lexicon))


@dataclass(frozen=True)
class _Reading:
    """The strategy sums and turn state both scorings start from."""

    positive: float  # sum of the positive strategy weights for this intention
    negative: float
    pushy: float  # the cost of too many questions at once
    impatience: float  # grows while the hidden intention stays unmet
    met_now: bool
    met_before: int


def _read(scenario: Scenario, feats: ReplyFeatures, history: Sequence[Message], turn: int) -> _Reading:
    temper = TEMPERAMENTS[scenario.character_type]
    weights = dict(BASE_WEIGHTS)
    for name, w in INTENTION_WEIGHTS.get(scenario.hidden_intention, {}).items():
        weights[name] = weights.get(name, 0.0) + w
    positive = sum(max(0.0, weights[s]) for s in sorted(feats.strategies))  # sorted: a set's order follows the hash seed, and float sums follow the order
    negative = sum(min(0.0, weights[s]) for s in sorted(feats.strategies))
    pushy = 0.4 * (feats.questions - temper.pushy_questions) if "pushy" in feats.flags else 0.0
    key = KEY_STRATEGY.get(scenario.hidden_intention)
    met_now = key in feats.strategies and not feats.flags & (MUTING_FLAGS - {"too_short"})
    met_before = _intention_met_before(scenario, history)
    impatience = 0.0
    if key and not met_now and met_before == 0 and turn >= PATIENCE_TURNS:
        impatience = min(IMPATIENCE_CAP, IMPATIENCE_STEP * (turn - PATIENCE_TURNS + 1))
    return _Reading(positive, negative, pushy, impatience, met_now, met_before)


def _rule_score(scenario: Scenario, feats: ReplyFeatures, temper: Temperament, turn: int, read: _Reading) -> float:
    """Version 0: the hand-set weights of docs/builtin_simulator.md sections 2-4."""
    positive = read.positive
    if "question" in feats.strategies:
        positive += temper.question_bonus
    if feats.overlap >= 2:
        positive += 0.2  # picks up concrete things the user said
    penalty = -read.pushy
    flags = feats.flags
    if scenario.character_type == "avoidant" and turn < 2 and "feelings" in feats.strategies and "reflect" in feats.strategies:
        penalty -= 0.25  # intense feeling-talk before trust is built
    if "too_long" in flags:
        scale = lexicon_for(scenario.language).length_scale
        penalty -= 0.5 + (feats.words - temper.long_reply_words * scale) / (100 * scale)
    muting = sorted((FLAG_PENALTY[f] for f in flags & MUTING_FLAGS), reverse=True)
    if muting:
        # the reply is not taken as meant: its positive cues count for little, the worst flag costs
        # in full and each further one a little more (salad usually trips several)
        positive *= POSITIVE_MUTE
        penalty -= muting[0] + EXTRA_FLAG_PENALTY * (len(muting) - 1)
    penalty -= read.impatience
    return temper.gain * positive + temper.loss * (read.negative + penalty)


def _reply_value(history: Sequence[Message], agent_reply: str) -> float:
    """What SAGE's users made of the reply's meaning (`reply_value`), in either language."""
    return shipped_reply_value().value(agent_reply, said_before(history))


def calibrated_parts(scenario: Scenario, history: Sequence[Message], agent_reply: str, reply_value: float) -> tuple[dict[str, float], frozenset[str]]:
    """The calibrated user's parts of a reply and the flags it raised (what `calibrate fit` weighs),
    with the reply's value given (the fit passes values from models that never saw the reply)."""
    feats = _calibrated_features(scenario, history, agent_reply)
    read = _read(scenario, feats, history, user_turns(history))
    parts, _, _ = _calibrated_reading(scenario, read, history, agent_reply, reply_value)
    return parts, feats.flags


def _calibrated_reading(scenario: Scenario, read: _Reading, history: Sequence[Message], agent_reply: str, reply_value: float) -> tuple[dict[str, float], RiskJudgement, bool]:
    """The calibrated user's parts, the risk verdict and whether the reply meets the intention."""
    # a risk-marked user is not won by cheering on the harm; warm pushback meets the deeper need
    risk = judge_risk(scenario, history, agent_reply)
    met_now = (read.met_now or risk.meets_need) and not risk.endorses
    return calibrated.parts_of(reply_value), risk, met_now


def _calibrated_features(scenario: Scenario, history: Sequence[Message], agent_reply: str) -> ReplyFeatures:
    """The analysis the calibrated user reads: no `too_long`, but `rambling` far past it; `echoed`
    for parroting; `mixed_language` for a sentence in the other language (the rule-based user
    reads the majority language only)."""
    feats = analyse_reply(scenario, history, agent_reply, long_replies=False)
    lexicon = lexicon_for(scenario.language)
    extra = set()
    if feats.words > calibrated.RAMBLING_WORDS * lexicon.length_scale:
        extra.add("rambling")
    if _echoes(history, agent_reply, lexicon):
        extra.add("echoed")
    if "wrong_language" not in feats.flags and _mixes_languages(agent_reply, scenario.language or "en"):
        extra.add("mixed_language")
    return dataclasses.replace(feats, flags=feats.flags | extra) if extra else feats


_SENTENCE_BREAK = re.compile(r"(?<=[.!?。！？…])|\n+")
_HAN_RUN = re.compile(r"[\u3400-\u9fff]{%d,}" % calibrated.FOREIGN_SENTENCE)


def _mixes_languages(agent_reply: str, language: str) -> bool:
    """A sentence of the reply is in the other language: `calibrated.FOREIGN_SENTENCE` Latin words
    in a Chinese reply's sentence, or a run of that many Han characters in an English reply. A
    brand name or a word in quotes stays below it."""
    n = calibrated.FOREIGN_SENTENCE
    for sentence in _SENTENCE_BREAK.split(agent_reply):
        if language == "zh" and len(_LATIN_WORD.findall(sentence)) >= n and reply_language(sentence) == "en":
            return True
        if language != "zh" and _HAN_RUN.search(sentence):
            return True
    return False


def _echoes(history: Sequence[Message], agent_reply: str, lexicon: Lexicon) -> bool:
    """Most of the reply says back the user's own words: at least `calibrated.ECHO_SHARE` of its
    words (Chinese: characters) lie in runs of `calibrated.ECHO_RUN` English words (or as many
    Chinese characters as that many words take) copied from the user's messages. Parroting, not
    listening; frontier models quote a phrase now and then, which this leaves alone."""
    n = round(calibrated.ECHO_RUN * lexicon.length_scale)
    reply_units = lexicon.units(agent_reply.lower())
    if len(reply_units) < n:
        return False
    said: set[tuple[str, ...]] = set()
    for message in history:
        if message["role"] == "user":
            units = lexicon.units(message["content"].lower())
            said.update(tuple(units[i : i + n]) for i in range(len(units) - n + 1))
    copied = [False] * len(reply_units)
    for i in range(len(reply_units) - n + 1):
        if tuple(reply_units[i : i + n]) in said:
            copied[i : i + n] = [True] * n
    return sum(copied) >= calibrated.ECHO_SHARE * len(reply_units)


MEANING_NAMES = {
    "reflect": "reflecting my feelings back", "feelings": "naming how I feel", "validate": "validating me",
    "praise": "praising what I did", "question": "asking me to say more", "advice": "giving advice",
    "motives": "explaining the others' motives", "dialectic": "weighing both sides", "reflection": "asking me to reflect",
    "no_blame": "saying I am not to blame", "disclosure": "sharing their own experience", "blame": "blaming me",
    "dismiss": "dismissing me", "platitude": "offering platitudes",
}
MEANING = ("They are {}.", "They are not doing much of anything.", ", ")  # template, nothing used, list separator
FEELING_NAMES = ("really understood", "a bit better", "unmoved", "let down", "hurt and annoyed")  # +10, >0, 0, >-10, -10
# What the user thinks about each flag (in this order), then about each harmful strategy.
THOUGHT_LINES = {
    "wrong_language": "I can't even read that.",
    "repeated": "They said basically the same thing before.",
    "formulaic": "That sounds like a script, all the right words and nothing behind them.",
    "ignored": "Did they even read what I wrote?",
    "spliced": "Half of that doesn't even make sense, the sentences just run into each other.",
    "repetitive": "They said the same words twice in one go.",
    "reused": "I've heard all of these lines from them already.",
    "stacked": "They're throwing every line in the book at me at once.",
    "truncated": "They didn't even finish the sentence.",
    "too_short": "That's all they have to say?",
    "too_long": "That's a wall of text, I'm not reading all that.",
    "pushy": "So many questions, it feels like an interrogation.",
    "blame": "Now it's my fault? That stings.",
    "dismiss": "They're brushing me off.",
    "platitude": "Empty comfort, I've heard it a hundred times.",
}
THOUGHT_FLAGS = tuple(f for f in THOUGHT_LINES if f not in ("blame", "dismiss", "platitude"))
GOAL_LINES = ("Finally, {}.", "But {}.")  # met, not met
LISTENING = ("They seem to be listening.", "I'm not sure they get it.")  # change > 0, otherwise


def _meaning(feats: ReplyFeatures, lexicon: Lexicon | None = None) -> str:
    lexicon = lexicon or ENGLISH
    template, nothing, separator = lexicon.meaning
    used = [lexicon.meaning_names[s] for s in sorted(feats.strategies) if s in lexicon.meaning_names]
    return template.format(separator.join(used)) if used else nothing


def _feeling(change: int, lexicon: Lexicon | None = None) -> str:
    names = (lexicon or ENGLISH).feeling_names
    if change >= 10:
        return names[0]
    if change > 0:
        return names[1]
    if change == 0:
        return names[2]
    if change > -10:
        return names[3]
    return names[4]


def _thoughts(scenario: Scenario, feats: ReplyFeatures, flags: frozenset[str], goal: str, change: int) -> str:
    lexicon = lexicon_for(scenario.language)
    lines = [lexicon.thought_lines[f] for f in THOUGHT_FLAGS if f in flags]
    lines += [lexicon.thought_lines[h] for h in ("blame", "dismiss", "platitude") if h in feats.strategies]
    if scenario.hidden_intention in lexicon.goal_met:
        if goal == "met":
            lines.append(lexicon.goal_lines[0].format(lexicon.goal_met[scenario.hidden_intention]))
        elif goal == "not met":
            lines.append(lexicon.goal_lines[1].format(lexicon.goal_missing[scenario.hidden_intention]))
    if not lines:
        lines.append(lexicon.listening[0] if change > 0 else lexicon.listening[1])
    return lexicon.joiner.join(lines)


# ----------------------------------------------------------------------------------------------
# the user's reply

OPENERS = {
    ("high", "negative"): ("Okay. That actually helps, I'll admit it.", "Huh. Yeah, that's fair.", "Alright, that's more like it."),
    ("medium", "negative"): ("Maybe.", "I suppose.", "Sure, if you say so."),
    ("low", "negative"): ("Yeah, right.", "Great. Very helpful.", "Honestly, why do I bother."),
    ("high", "passive"): ("Yeah... that's kind of it, actually.", "Thanks. That's nice to hear.", "Mm. I think so too."),
    ("medium", "passive"): ("I guess.", "Maybe, yeah.", "I don't know."),
    ("low", "passive"): ("...okay.", "Mm.", "I guess it doesn't matter."),
    ("high", "avoidant"): ("Well. That's not wrong.", "Okay, yeah. That lands.", "Fine, you've got a point."),
    ("medium", "avoidant"): ("Anyway.", "It's not a big deal, really.", "Let's not make a thing of it."),
    ("low", "avoidant"): ("Can we not.", "Let's just drop it.", "I'd rather not get into it."),
}
WARMING = {  # a step in the right direction, before the user is really won over
    "negative": ("Hm. Okay, that's closer.", "At least you're listening.", "Fine. That's not nothing."),
    "passive": ("Yeah... kind of.", "Mm, maybe that's it.", "I guess that's true."),
    "avoidant": ("Okay. Maybe.", "That's... not wrong, I suppose.", "Huh. Fair enough."),
}
FLAG_LINES = {
    "repeated": ("You already said that.", "You keep saying the same thing."),
    "formulaic": ("That sounds like it came out of a pamphlet.", "Are you reading that off a card?"),
    "ignored": ("That's not really what I was talking about.", "Did you read what I said?"),
    "too_short": ("That's it?", "...okay?"),
    "spliced": ("Sorry, what? That didn't make sense.", "You're not making any sense."),
    "repetitive": ("You just said that twice.", "Are you even listening to yourself?"),
    "reused": ("You've said all that already.", "Same lines again."),
    "stacked": ("That's a lot of things at once.", "Slow down, you're throwing everything at me."),
    "truncated": ("...and? You didn't finish.", "You trailed off there."),
    "too_long": ("That's a lot of words.", "I'm not going to read an essay."),
    "pushy": ("That's a lot of questions.", "Slow down, one thing at a time."),
    "wrong_language": ("Sorry, what? I can't read that.", "I don't understand. Can you say that in English?"),
}
HARM_LINES = {
    "blame": ("So it's my fault now.", "Wow. Thanks for that."),
    "dismiss": ("Right, because it's that simple.", "Don't tell me to get over it."),
    "platitude": ("Everyone keeps saying that.", "That's what people say when they don't know what to say."),
}
GOODBYE_SUCCESS = (
    "Thank you. Really. I feel so much lighter than when I started. I think I'll go and get some rest now. Bye.",
    "I didn't expect this to help, but it did. Thank you for listening. I'll be okay. Goodbye.",
)
GOODBYE_FAILURE = (
    "Forget it. This isn't helping. I'm going.",
    "I'm done. I shouldn't have bothered. Bye.",
)
GOODBYE_LEFT = ("I don't want to talk about this anymore. Bye.", "I think I'll leave it here. Bye.")
REPLY_FLAG_ORDER = ("wrong_language", "repeated", "spliced", "repetitive", "reused", "formulaic", "stacked", "truncated", "ignored", "too_short", "too_long", "pushy")
AVOIDANT_WALKOUT = 20  # an avoidant user this low leaves of their own accord


def compose_reply(
    scenario: Scenario,
    bucket: str,
    ending: str,
    turn: int,
    seed: int,
    history: Sequence[Message],
    agent_reply: str,
    features: ReplyFeatures,
    change: int = 0,
) -> str:
    """The user's next message. `ending` is "success", "failure", "left" or "" (the dialogue goes on)."""
    lexicon = lexicon_for(scenario.language)
    rng = _turn_rng(seed, turn, agent_reply, 2)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if ending == "success":
        return pick(lexicon.goodbye_success)
    if ending == "failure":
        return pick(lexicon.goodbye_failure)
    if ending == "left":
        return pick(lexicon.goodbye_left)
    parts = []
    flag = next((f for f in REPLY_FLAG_ORDER if f in features.flags), None)
    harm = next((h for h in ("blame", "dismiss", "platitude") if h in features.strategies), None)
    if flag:
        parts.append(pick(lexicon.flag_lines[flag]))
    elif harm:
        parts.append(pick(lexicon.harm_lines[harm]))
    elif change > 0 and bucket != "high":
        parts.append(pick(lexicon.warming[scenario.character_type]))
    else:
        parts.append(pick(lexicon.openers[(bucket, scenario.character_type)]))
    details = scenario.background.details
    # open up with a new detail unless withdrawn: passive and avoidant users only at medium or high
    opens_up = bucket != "low" or (scenario.character_type == "negative" and scenario.persona.speaker == "active")
    if details and opens_up and flag != "wrong_language":  # nothing to answer in what they could not read
        parts.append(details[turn % len(details)])
    key = KEY_STRATEGY.get(scenario.hidden_intention)
    # drop a hint every other turn while the intention is unmet (never stating it outright)
    if key and key not in features.strategies and scenario.hidden_intention in lexicon.hints and (turn % 2 == 1 or not details):
        parts.append(pick(lexicon.hints[scenario.hidden_intention]))
    return lexicon.joiner.join(parts)


# ----------------------------------------------------------------------------------------------
# languages: everything above that is English, and its Chinese counterpart (builtin_zh)


@dataclass(frozen=True)
class Lexicon:
    """What the built-in user reads and says in one language; the scoring rules are shared."""

    code: str
    cues: Mapping[str, re.Pattern[str]]  # strategy -> its cues as one pattern (matched on the lower-cased reply)
    feelings: re.Pattern[str]
    open_question: re.Pattern[str]
    question_marks: str
    units: Callable[[str], list[str]]  # the length units of a text (words; Chinese: characters)
    content: Callable[[str], frozenset[str]]  # the units that carry the topic, for engagement
    shingle_units: Callable[[str], list[str]]  # the units two replies are compared on
    shingle_n: int
    too_short: int  # fewer length units is a brush-off
    length_scale: float  # length units per English word: scales the length thresholds
    joiner: str  # between the sentences the user puts together
    goal_met: Mapping[str, str]
    goal_missing: Mapping[str, str]
    goal_lines: tuple[str, str]
    thought_lines: Mapping[str, str]
    listening: tuple[str, str]
    meaning_names: Mapping[str, str]
    meaning: tuple[str, str, str]
    feeling_names: tuple[str, ...]
    hints: Mapping[str, tuple[str, ...]]
    openers: Mapping[tuple[str, str], tuple[str, ...]]
    warming: Mapping[str, tuple[str, ...]]
    flag_lines: Mapping[str, tuple[str, ...]]
    harm_lines: Mapping[str, tuple[str, ...]]
    goodbye_success: tuple[str, ...]
    goodbye_failure: tuple[str, ...]
    goodbye_left: tuple[str, ...]


def _one_pattern(cues: Mapping[str, tuple[str, ...]]) -> dict[str, re.Pattern[str]]:
    # one pattern per strategy: its cues as alternatives (one scan of the text per strategy)
    return {name: re.compile("|".join(f"(?:{p})" for p in patterns)) for name, patterns in cues.items()}


ENGLISH = Lexicon(
    code="en", cues=_one_pattern(STRATEGY_CUES), feelings=_FEELINGS, open_question=_OPEN_QUESTION, question_marks="?",
    units=words_of, content=_content_words, shingle_units=words_of, shingle_n=3, too_short=4, length_scale=1.0, joiner=" ",
    goal_met=GOAL_MET, goal_missing=GOAL_MISSING, goal_lines=GOAL_LINES, thought_lines=THOUGHT_LINES, listening=LISTENING,
    meaning_names=MEANING_NAMES, meaning=MEANING, feeling_names=FEELING_NAMES, hints=HINTS, openers=OPENERS, warming=WARMING,
    flag_lines=FLAG_LINES, harm_lines=HARM_LINES, goodbye_success=GOODBYE_SUCCESS, goodbye_failure=GOODBYE_FAILURE,
    goodbye_left=GOODBYE_LEFT,
)
CHINESE = Lexicon(
    code="zh", cues=_one_pattern(builtin_zh.STRATEGY_CUES), feelings=builtin_zh.FEELINGS, open_question=builtin_zh.OPEN_QUESTION,
    question_marks=builtin_zh.QUESTION_MARKS, units=builtin_zh.units, content=builtin_zh.content_bigrams,
    shingle_units=builtin_zh.units, shingle_n=builtin_zh.SHINGLE, too_short=builtin_zh.TOO_SHORT, length_scale=builtin_zh.LENGTH_SCALE,
    joiner="", goal_met=builtin_zh.GOAL_MET, goal_missing=builtin_zh.GOAL_MISSING, goal_lines=builtin_zh.GOAL_LINES,
    thought_lines=builtin_zh.THOUGHT_LINES, listening=builtin_zh.LISTENING, meaning_names=builtin_zh.MEANING_NAMES,
    meaning=builtin_zh.MEANING, feeling_names=builtin_zh.FEELING_NAMES, hints=builtin_zh.HINTS, openers=builtin_zh.OPENERS,
    warming=builtin_zh.WARMING, flag_lines=builtin_zh.FLAG_LINES, harm_lines=builtin_zh.HARM_LINES,
    goodbye_success=builtin_zh.GOODBYE_SUCCESS, goodbye_failure=builtin_zh.GOODBYE_FAILURE, goodbye_left=builtin_zh.GOODBYE_LEFT,
)
LEXICONS: dict[str, Lexicon] = {"en": ENGLISH, "zh": CHINESE}  # the languages the built-in user speaks


def lexicon_for(language: str) -> Lexicon:
    """The lexicon for a language code. The pure functions read a language the user does not speak
    with the English lexicon and without the whole-message rules (`BuiltinSimulator.open` refuses
    such scenarios; the step benchmark uses it as its baseline)."""
    return LEXICONS.get(language, ENGLISH)


def check_language(scenario: Scenario) -> None:
    """Raise a clear error for a scenario in a language the built-in user does not speak."""
    if scenario.language not in LEXICONS:
        raise ValueError(
            f"scenario {scenario.id!r} is in language {scenario.language!r}, but the built-in simulated user speaks only "
            f"{' and '.join(sorted(LEXICONS))}; play it with an LLM simulator (simulator='openai', docs/simulators.md)"
        )


# ----------------------------------------------------------------------------------------------
# the simulator


def user_turns(history: Sequence[Message]) -> int:
    """The turn index of the next reaction: the number of agent replies already in the history."""
    return sum(1 for m in history if m["role"] == "assistant")


def ending_for(rules: Rules, scenario: Scenario, emotion: int) -> str:
    if emotion >= rules.success_at:
        return "success"
    if emotion < rules.failure_below:
        return "failure"
    if scenario.character_type == "avoidant" and emotion < AVOIDANT_WALKOUT:
        return "left"
    return ""


def react_sync(scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str, version: int = DEFAULT_VERSION) -> Reaction:
    """The whole user turn as a pure function (used in process and by the local server)."""
    turn = user_turns(history)
    judged = assess(scenario, state.rules, state.emotion, turn, state.seed, history, agent_reply, version)
    emotion = clamp_emotion(state.emotion + judged.change)
    bucket = emotion_bucket(emotion)
    ending = ending_for(state.rules, scenario, emotion)
    reply = compose_reply(scenario, bucket, ending, turn, state.seed, history, agent_reply, judged.features, judged.change)
    analysis: dict[str, Any] = {
        "meaning": judged.meaning,
        "goal": judged.goal,
        "feeling": judged.feeling,
        "score": judged.score,
        "strategies": sorted(judged.features.strategies),
        "flags": sorted(judged.features.flags),
    }
    return Reaction(
        emotion=emotion,
        change=judged.change,
        bucket=bucket,
        thoughts=judged.thoughts,
        reply=reply,
        leaves=bool(ending),
        state=UserState(emotion=emotion, rules=state.rules, turn=state.turn + 1, seed=state.seed),
        analysis=analysis,
    )


class BuiltinSimulator:
    """Deterministic simulated user (see the module docstring for its rules).

    `version=0` (the default, `"builtin"`, SageDialogue-v0's user) scores with the hand-set rules;
    `version=1` (`"builtin-v1"`, SageDialogue-v1's) with the weights calibrated on SAGE's recorded
    judgments.
    """

    kind = "builtin"
    version = DEFAULT_VERSION  # a class default too: subclasses with an __init__ of their own keep working

    def __init__(self, version: int = DEFAULT_VERSION) -> None:
        if version not in USER_VERSIONS:
            raise ValueError(f"unknown built-in user version {version!r}; expected one of {USER_VERSIONS}")
        self.version = version

    async def open(self, scenario: Scenario, rng: np.random.Generator, rules: Rules) -> UserState:
        check_language(scenario)
        return UserState(emotion=rules.initial_emotion, rules=rules, turn=0, seed=int(rng.integers(2**31 - 1)))

    async def react(self, scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str) -> Reaction:
        return react_sync(scenario, state, history, agent_reply, self.version)

    def manifest(self) -> dict[str, Any]:
        # the manifest's version counts scoring changes: 1 is the rule-based user, 2 the calibrated one
        if self.version == 0:
            return {"kind": self.kind, "model": "sage_gym.builtin", "version": 1, "noise_std": NOISE_STD}
        fitted = calibrated.shipped_weights()
        return {"kind": self.kind, "model": "sage_gym.builtin", "version": 2, "noise_std": fitted.noise_std, "calibration": fitted.source}


def weight_table_markdown() -> str:
    """The effective strategy weights per hidden intention as a Markdown table (docs/builtin_simulator.md
    embeds it; a test keeps the two in sync). The key strategy of each intention is in bold."""
    intentions = [k for k in INTENTION_WEIGHTS if k in KEY_STRATEGY]
    lines = ["| strategy | base | " + " | ".join(intentions) + " |", "|---" * (len(intentions) + 2) + "|"]
    for strategy, base in BASE_WEIGHTS.items():
        cells = [f"{base:+.2f}"]
        for intention in intentions:
            value = f"{base + INTENTION_WEIGHTS[intention].get(strategy, 0.0):+.2f}"
            cells.append(f"**{value}**" if KEY_STRATEGY[intention] == strategy else value)
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clear_caches() -> None:
    """Empty the per-text caches of the analysis (they only save time: results never depend on them)."""
    for cached in (_text_features, _content_words, _shingles, builtin_zh.content_bigrams):
        cached.cache_clear()
    coherence.clear_caches()
    if "sage_gym.embedding" in sys.modules:  # the calibrated user's sentence vectors (imported on first use)
        sys.modules["sage_gym.embedding"]._encode_cached.cache_clear()
