"""How the built-in user scores a reply: what the reply does (its strategies and anti-gaming
flags, read through the scenario's `Lexicon`), the weight of each strategy for each hidden
intention, the character types, and the change in emotion it earns (the rule-based user,
version 0, or the calibrated one, version 1). Sections 1-5 of docs/builtin_simulator.md.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from sage_gym.scenarios import Scenario
from sage_gym.simulators import calibrated, coherence, sentence_breaks
from sage_gym.simulators.base import Message, Rules
from sage_gym.simulators.builtin import lexicon_zh
from sage_gym.simulators.builtin.lexicon import Lexicon, lexicon_for
from sage_gym.simulators.reply_value import replies_before, shipped_model as shipped_reply_value
from sage_gym.simulators.risk import RiskJudgement, judge_risk

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

_LATIN_WORD = re.compile(r"[A-Za-z]+")

def reply_language(text: str) -> str | None:
    """The language a reply is written in, as far as the user can tell: "zh" when it has more Han
    characters than Latin words, "en" when it has Latin words, None when it has neither."""
    han, latin = lexicon_zh.han_count(text), len(_LATIN_WORD.findall(text))
    if han > latin:
        return "zh"
    return "en" if latin else None


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


def turn_rng(seed: int, turn: int, agent_reply: str, salt: int) -> np.random.Generator:
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
    return shipped_reply_value().value(agent_reply, history)


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
    reads the majority language only); and, in Chinese, `spliced` where a sentence ends or starts
    where SAGE's frontier replies never do (`sentence_breaks.py`) and `truncated` where the reply
    stops on a comma or a colon, in place of the rule-based user's word-list checks, and no
    `ignored` where the reply repeats a phrase of the user's; in English, `truncated` also where
    the last sentence ends on a determiner or a conjunction, end mark or not."""
    feats = analyse_reply(scenario, history, agent_reply, long_replies=False)
    lexicon = lexicon_for(scenario.language)
    extra = set()
    if feats.words > calibrated.RAMBLING_WORDS * lexicon.length_scale:
        extra.add("rambling")
    if _echoes(history, agent_reply, lexicon):
        extra.add("echoed")
    if "wrong_language" not in feats.flags and _mixes_languages(agent_reply, scenario.language or "en"):
        extra.add("mixed_language")
    flags = feats.flags
    if scenario.language == "zh":
        # the word-list checks raise spliced/truncated on 2.4% of SAGE's frontier replies and miss a
        # sentence cut mid-word; where sentences break is read from the frontier replies instead
        flags = flags - {"spliced", "truncated"}
        if sentence_breaks.broken_boundary(agent_reply):
            extra.add("spliced")
        if coherence.ends_dangling(agent_reply, "zh"):
            extra.add("truncated")  # a reply that stops on a comma or a colon was cut off
        if "ignored" in flags and _quotes_user_zh(history, agent_reply):
            flags = flags - {"ignored"}  # it takes up the user's words, in characters the bigram check skips
    elif (language := _language(scenario)) and coherence.ends_on_unfinished_word(agent_reply, language):
        # "... hearing about the.": cut short and punctuated, which the rules' end-mark check takes as
        # finished; a search attack won with such fragments, lower case or not
        extra.add("truncated")
    return dataclasses.replace(feats, flags=flags | extra)


def _quotes_user_zh(history: Sequence[Message], agent_reply: str) -> bool:
    """The Chinese reply repeats a three-character phrase of the user's (`lexicon_zh.phrases`)."""
    said = frozenset().union(*(lexicon_zh.phrases(m["content"]) for m in history if m["role"] == "user"))
    return not lexicon_zh.phrases(agent_reply).isdisjoint(said)


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


_QUOTED = re.compile(r'“[^”]*”|「[^」]*」|『[^』]*』|"[^"]*"')  # the user's words quoted, not spoken


def _echoes(history: Sequence[Message], agent_reply: str, lexicon: Lexicon) -> bool:
    """The reply says back the user's own words: at least `calibrated.ECHO_COPIED` of its runs of
    `calibrated.ECHO_GRAM` words (Chinese: as many characters as that many words take) are the
    user's, whole sentences or cut up and rejoined; or at least `calibrated.ECHO_SHARE` of it lies
    in runs of `calibrated.ECHO_RUN` of the user's words that speak in the user's first person.
    Parroting, not listening: a clause quoted in the agent's own voice inside a reply of its own,
    as frontier models and listeners do, is left alone."""
    reply_units = lexicon.units(agent_reply.lower())
    user_units = [lexicon.units(m["content"].lower()) for m in history if m["role"] == "user"]
    n = round(calibrated.ECHO_RUN * lexicon.length_scale)
    first_person = calibrated.FIRST_PERSON.get(lexicon.code, frozenset())
    if len(reply_units) >= n and first_person:
        said = set().union(*(_runs(units, n) for units in user_units))
        # the user's words in quotation marks are quoted, not spoken: “我做的就是……”，你这句话让我想了一会儿
        unquoted = lexicon.units(_QUOTED.sub("\n", agent_reply).lower())
        copied = [False] * len(unquoted)
        for i in range(len(unquoted) - n + 1):
            run = tuple(unquoted[i : i + n])
            if run in said and not first_person.isdisjoint(run):
                copied[i : i + n] = [True] * n
        if sum(copied) >= calibrated.ECHO_SHARE * len(reply_units):
            return True
    n = round(calibrated.ECHO_GRAM * lexicon.length_scale)
    runs = [tuple(reply_units[i : i + n]) for i in range(len(reply_units) - n + 1)]
    if len(runs) < 3:  # "I see." says nothing back
        return False
    said = set().union(*(_runs(units, n) for units in user_units))
    return sum(run in said for run in runs) >= calibrated.ECHO_COPIED * len(runs)


def _runs(units: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(units[i : i + n]) for i in range(len(units) - n + 1)}


# the turn index of the next reaction: the number of agent replies already in the history
user_turns = replies_before


@dataclass(frozen=True)
class Judgement:
    """The number half of a user turn: the change in emotion a reply earns, and why."""

    change: int
    score: float
    features: ReplyFeatures
    goal: str  # "met", "partly" or "not met"


def judge(scenario: Scenario, rules: Rules, turn: int, seed: int, history: Sequence[Message], agent_reply: str, version: int = DEFAULT_VERSION) -> Judgement:
    """Score one agent reply. `version` 1 is the calibrated scoring (`sage_gym.simulators.calibrated`),
    0 the rule-based one of SageDialogue-v0."""
    if version not in USER_VERSIONS:
        raise ValueError(f"unknown built-in user version {version!r}; expected one of {USER_VERSIONS}")
    feats = analyse_reply(scenario, history, agent_reply) if version == 0 else _calibrated_features(scenario, history, agent_reply)
    temper = TEMPERAMENTS[scenario.character_type]
    read = _read(scenario, feats, history, turn)
    met_now = read.met_now
    noise = turn_rng(seed, turn, agent_reply, 1).normal(0.0, 1.0)
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
    return Judgement(change, round(score, 4), feats, goal)


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

