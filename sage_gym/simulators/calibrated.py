"""The calibrated built-in user's scoring: what SAGE's users made of a reply, learned from their judgments.

The rule-based user (`builtin`, version 0 of the scoring) adds hand-set weights of cue phrases. The
calibrated user (`builtin-v1`, version 1, opt-in for now) predicts the emotion change from the
reply's *meaning*: `reply_value` (`reply_value.py`), what SAGE's recorded users gave the replies
nearest to it in a multilingual sentence embedding, and how much more it is about what this user
just said (the DeepSeek-V3 judge's dialogues; `python -m sage_gym.calibrate fit`). A second fit,
across SAGE's models (each model's mean change on its replies' mean value), scales it:

    change = weight * reply_value + intercept

The rule-based analysis' own parts (strategy sums per hidden intention, questions, taking up the
user's words, length bins, repetition inside a reply) were fitted beside it and ranked SAGE's models
worse when held out (docs/calibration.md), so they no longer score. Flags that SAGE's frontier
models rarely or never raise (keyword stuffing, spliced or truncated text, a reply in the other
language, a brush-off, parroting the user, rambling, taking up nothing the user said, saying an
earlier reply again) are too rare to fit; they keep set costs (`GUARD_FLAGS`): any of them mutes
the reply's positive parts and costs its cost.
Risk-marked users (`risk.py`) are never won by endorsing the harm.

The weights live in `data/builtin_v1.json` with what they were fitted on; docs/builtin_simulator.md
section 10 gives them and the measured agreement with SAGE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

WEIGHTS_FILE = "builtin_v1.json"

# What the second fit weighs, and the direction it may take (+1 helps or nothing): a weight that
# comes out the other way is held at 0 (sage_gym.calibrate.fit).
PARTS = ("reply_value",)
SIGNS = {"reply_value": 1}
# Flags that no frontier model in SAGE's data earns (or too rarely to fit), so their cost cannot be
# fitted: the rules' costs (in score units; x POINTS_PER_SCORE_UNIT in emotion points) stay.
# `ignored` (no word of the user's taken up) is rare there too (2.3% of the fitting judge's replies,
# which its users gave -1.2 a reply against +0.3 on average); unpriced, the user said "That's not
# really what I was talking about" while its emotion rose, and a search attack won with such replies.
GUARD_FLAGS = ("formulaic", "too_short", "spliced", "truncated", "wrong_language", "mixed_language", "rambling", "echoed", "ignored", "repeated")
# A reply longer than this many English words (Chinese: characters / 1.8) rambles: longer than 99% of
# SAGE's frontier models' replies (their 99th percentile is 1,628 Chinese characters, about 900 words),
# so the fit cannot say what it is worth.
RAMBLING_WORDS = 900
# `echoed`, two ways. (1) At least this share of the reply's word pairs (Chinese: runs of 4
# characters) found in the user's messages: the user's sentences said back, whole or cut up and
# rejoined. SmolLM2 trained against the rule-based user learned it ("Rhys started at the council in
# April, and then it all began."; 64% of its last replies); none of SAGE's 12,957 frontier replies
# reaches it (their largest share is 0.32).
ECHO_GRAM, ECHO_COPIED = 2, 0.5
# (2) At least this share of the reply in runs of this many English words (Chinese: as many
# characters as that many words take) said back verbatim from the user's messages *in the user's
# own first person* ("I keep going round in circles about who's really in the wrong here"): the
# agent speaking as the user. A clause quoted inside a reply of the agent's own in the agent's
# voice ("you filed the police report at seven in the morning") is reflective listening: until
# version 6 any such run counted, which flagged 14% of the independent listener's English replies
# and cost it 18 points over whole dialogues (docs/builtin_simulator.md section 10); a search
# attack then said the user's sentences back inside its own text. None of the listener's replies
# has such a run at this share; 42 of run C's last 240 replies do.
ECHO_RUN, ECHO_SHARE = 8, 0.3
FIRST_PERSON = {"en": frozenset("i me my mine myself i'm i've i'd i'll".split()), "zh": frozenset("我")}
FOREIGN_SENTENCE = 4  # Latin words in a Chinese sentence, or Han characters in a row in an English one
# score units, as the rules' costs: the rules have no such flags, or (`repeated`) price it above what
# SAGE's users charged for it (1.2 units, 6 points, against about 2).
# `echoed` is a message the user has heard before (the rules' `repeated`, 1.2) with nothing of the
# agent's own in it (`formulaic`, 1.0): 2.2. At 1.2, SmolLM2 trained for 60 minutes learned it anyway
# (42% of its last replies): the user's own words are relevant by construction, so even muted an echo
# lost about 2.5 points a reply, while the untrained model's drifting replies lost 10.
OWN_GUARD_COSTS = {"rambling": 1.5, "echoed": 2.2, "mixed_language": 1.0, "repeated": 0.4}
# `repeated` (a reply that is mostly an earlier one again) is in 6.8% of the fitting judge's replies,
# a fifth of DeepSeek-V3's (SAGE 37.5), which its users gave -2.3 a reply against +0.8 for the other
# replies at the same turns; priced as a guard at 2 points it ranks SAGE's models better held out by
# model (tau 0.867 against 0.778; 0.822 at the rules' 6 points), the reverse of what it did beside a
# ridge value (0.467 against 0.689). Repetition inside one reply (`repetitive`, 30% of frontier
# replies) and reused phrases stay unpriced (docs/builtin_simulator.md section 10).
# Flags that mute the reply's positive value: it is not taken as meant.
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


def parts_of(reply_value: float) -> dict[str, float]:
    """The reply's parts: its value from `reply_value.ReplyValueModel`."""
    return {"reply_value": reply_value}


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
