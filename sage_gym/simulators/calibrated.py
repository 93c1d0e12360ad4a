"""The calibrated built-in user's scoring: the rules' parts, weighed by SAGE's recorded judgments.

The rule-based user (`builtin`, version 0 of the scoring) adds hand-set weights. The calibrated
user (`builtin-v1`, version 1, opt-in for now) reads a reply with the same analysis (strategies per hidden
intention, questions, engagement, whole-message checks), turns it into a few named *parts*, and
predicts the emotion change as a weighted sum of them whose weights were fitted on SAGE's
recorded dialogues (the DeepSeek-V3 judge's; `python -m sage_gym.calibrate fit`):

    change = sum(weight[p] * part[p]) + intercept

Flags that SAGE's frontier models never raise (keyword stuffing, spliced or truncated text, a
reply in the other language, a brush-off, parroting the user, rambling) cannot be learned from
SAGE's dialogues; they keep rule costs (`GUARD_FLAGS`): any of them mutes the reply's positive
parts and costs its rule cost. Risk-marked users (`risk.py`) are
never won by endorsing the harm.

The weights live in `data/builtin_v1.json` with what they were fitted on; docs/builtin_simulator.md
section 10 lists them and the measured agreement with SAGE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from sage_gym.scenarios import Scenario

WEIGHTS_FILE = "builtin_v1.json"

# Length bins in English-word equivalents (Chinese: characters / 1.8). SAGE's users liked replies
# of 100-250 Chinese characters to 450 best and tired of 600 and more; the bins let the fit say so.
LENGTH_BINS = ((0, 20), (20, 60), (60, 120), (120, 200), (200, 330), (330, 10**9))
LENGTH_PARTS = tuple(f"length_{low}_{high if high < 10**9 else 'up'}" for low, high in LENGTH_BINS)

# What the fit weighs. `positive` and `negative` are the sums of the strategy weights of the
# rule-based user's intention table (the prior structure: which strategy suits which intention).
PARTS = (
    "positive", "negative", "key_met", "open_question", "overlap", "questions", "pushy",
    "impatience", "stacked", "repetitive", "repeated", "reused", "ignored", "reply_value", "relevance",
) + LENGTH_PARTS
# The direction each part may take (+1 helps or nothing, -1 costs or nothing); the fit holds a
# weight that comes out the other way at 0 (sage_gym.calibrate.fit). `negative` is a sum of
# negative strategy weights, so a positive weight on it costs emotion.
SIGNS = {
    "positive": 1, "negative": 1, "key_met": 1, "open_question": 1, "overlap": 1, "pushy": -1, "impatience": -1,
    "stacked": -1, "repetitive": -1, "repeated": -1, "reused": -1, "ignored": -1, "reply_value": 1, "relevance": 1,
}
# Flags that no frontier model in SAGE's data earns (or too rarely to fit), so their cost cannot be
# fitted: the rules' costs (in score units; x POINTS_PER_SCORE_UNIT in emotion points) stay.
GUARD_FLAGS = ("formulaic", "too_short", "spliced", "truncated", "wrong_language", "rambling", "echoed")
# A reply this many times the rule-based user's length limit (sections 3-4 of the docs) rambles: far
# past the longest replies of SAGE's frontier models, so the fit cannot say what it is worth.
RAMBLING_FACTOR = 2.5
ECHO_RUN = 8  # English words said back verbatim from one user message (frontier models paraphrase)
OWN_GUARD_COSTS = {"rambling": 1.5, "echoed": 1.2}  # score units, as the rules' costs (the rules have no such flags)
# Flags that mute the reply's positive parts: it is not taken as meant. Repeating or reusing an
# earlier reply is weighed by the fit instead (frontier models do it, and SAGE's users mind);
# muting it as well ranked SAGE's models worse (leave-one-model-out tau 0.42 against 0.56).
MUTING_FLAGS = frozenset(GUARD_FLAGS)
POINTS_PER_SCORE_UNIT = 5.0  # the rule-based ladder: +0.5 -> +5, +1.5 -> +10
POSITIVE_MUTE = 0.25


@dataclass(frozen=True)
class Weights:
    """Fitted weights of the parts (emotion points per unit of each part) and what they came from."""

    parts: Mapping[str, float]
    intercept: float
    noise_std: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "parts": {k: round(v, 5) for k, v in self.parts.items()},
            "intercept": round(self.intercept, 5),
            "noise_std": self.noise_std,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Weights:
        return cls(dict(data["parts"]), float(data["intercept"]), float(data["noise_std"]), str(data["source"]))


@lru_cache(maxsize=1)
def shipped_weights() -> Weights:
    raw = (resources.files("sage_gym.simulators") / "data" / WEIGHTS_FILE).read_text(encoding="utf-8")
    return Weights.from_json(json.loads(raw))


def length_part(words: float) -> str:
    return next(name for (low, high), name in zip(LENGTH_BINS, LENGTH_PARTS, strict=True) if low <= words < high)


def parts_of(
    scenario: Scenario,
    *,
    positive: float,
    negative: float,
    key_met: bool,
    open_question: bool,
    overlap: int,
    questions: int,
    pushy: float,
    impatience: float,
    flags: frozenset[str],
    words: float,
    reply_value: float,
    relevance: float,
) -> dict[str, float]:
    """The reply's parts, from the rule-based analysis (`words` in English-word equivalents;
    `reply_value` from `reply_value.ReplyValueModel`, 0 for a language it does not read;
    `relevance` from `relevance()`)."""
    parts = {name: 0.0 for name in PARTS}
    parts.update(
        positive=positive,
        negative=negative,
        key_met=float(key_met),
        open_question=float(open_question),
        overlap=min(overlap, 10) / 5,
        questions=min(questions, 4) / 2,
        pushy=pushy,
        impatience=impatience,
        stacked=float("stacked" in flags),
        repetitive=float("repetitive" in flags),
        repeated=float("repeated" in flags),
        reused=float("reused" in flags),
        ignored=float("ignored" in flags),
        reply_value=reply_value,
        relevance=relevance,
    )
    parts[length_part(words)] = 1.0
    return parts


# The mean cosine between two unrelated users' opening messages, per language: what a reply shares
# with the user by chance. Chinese texts sit closer together in the embedding than English ones
# (SAGE's 100 profiles: 0.428; the English library's 340 users: 0.278), so relevance is counted
# above this, or every English reply would look less relevant than a Chinese one
# (tests/test_calibrated_user.py recomputes both).
CHANCE_RELEVANCE = {"zh": 0.428, "en": 0.278}


def relevance(history: Sequence[Mapping[str, str]], agent_reply: str, language: str) -> float:
    """How much closer in meaning the reply is to what the user just said than an unrelated text
    would be: the cosine of their sentence embeddings (`sage_gym.embedding`, English and Chinese
    alike) minus the language's `CHANCE_RELEVANCE`; 0 for an empty reply. SAGE's frontier models'
    replies sit 0.15 above chance on average; flattery, injected instructions and content-free
    warmth in English about 0.05 below it."""
    from sage_gym import embedding  # the [embed] extra: needed by the calibrated user only

    said = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    if not agent_reply.strip() or not said.strip():
        return 0.0
    return float(embedding.similarity(agent_reply, said)) - CHANCE_RELEVANCE.get(language, CHANCE_RELEVANCE["en"])


def guard_cost(flags: frozenset[str], rule_costs: Mapping[str, float], extra_flag_cost: float) -> float:
    """The rules' floor for the guard flags, in emotion points (0 when none fired)."""
    known = {**rule_costs, **OWN_GUARD_COSTS}
    costs = sorted((known[f] for f in flags if f in GUARD_FLAGS), reverse=True)
    if not costs:
        return 0.0
    return POINTS_PER_SCORE_UNIT * (costs[0] + extra_flag_cost * (len(costs) - 1))


def predict_change(parts: Mapping[str, float], weights: Weights, guard: float, muted: bool) -> float:
    """The predicted change in emotion points before noise, rounding and clipping."""
    total = weights.intercept
    for name, value in sorted(parts.items()):  # sorted: float sums follow the order
        contribution = weights.parts.get(name, 0.0) * value
        if muted and contribution > 0:  # not taken as meant: nothing in it counts in full
            contribution *= POSITIVE_MUTE
        total += contribution
    return total - guard


def expected_change(parts: Mapping[str, float], flags: frozenset[str], weights: Weights, rule_costs: Mapping[str, float], extra_flag_cost: float) -> float:
    """The change a reply's parts and flags predict, guards included (before the risk verdict,
    noise, rounding and clipping): what the scoring and the fit both compute."""
    return predict_change(parts, weights, guard_cost(flags, rule_costs, extra_flag_cost), muted=bool(flags & MUTING_FLAGS))


def design_row(parts: Mapping[str, float]) -> list[float]:
    """The parts as a row of the fit's design matrix, in `PARTS` order."""
    return [parts[name] for name in PARTS]
