"""What SAGE's LLM users make of a reply's wording: a linear model fitted on their recorded judgments.

SAGE published its benchmark dialogues: frontier models talking with LLM-simulated Chinese users,
every reply followed by the user's emotion. The model here reads a reply as a bag of character
uni- and bigrams (sublinear tf-idf, unit length) and predicts the emotion change the recorded
DeepSeek-V3 user gave it, with the user's emotion before the reply as a covariate (SAGE's changes
carry momentum: a user already warm warms further) that is then held at the neutral 40. Only the
reply's own value is kept: `value(text)` is the predicted change at neutral emotion minus the
model's mean, in emotion points per reply.

It is fitted on the DeepSeek-V3 judge's dialogues only (`sage_gym.calibrate.fit`, run by
`python -m sage_gym.calibrate fit`); the GPT-4o judge's dialogues are held out to measure it. It reads
Chinese characters, so it serves Chinese replies; English replies get no value from it (the
built-in user's shared, language-neutral rules carry English). docs/builtin_simulator.md
section 10 says what it can and cannot know.

Torch-free and cheap: a reply of 500 characters costs about 1,000 dictionary look-ups.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

NGRAMS = (1, 2)
MODEL_FILE = "reply_value_zh.json.gz"
NEUTRAL_EMOTION = 40
MOMENTUM_SCALE = 20.0  # the emotion covariate is (emotion - 40) / 20


def ngram_counts(text: str) -> Counter[str]:
    text = text.lower()
    grams: Counter[str] = Counter()
    for n in NGRAMS:
        grams.update(text[i : i + n] for i in range(len(text) - n + 1))
    return grams


@dataclass(frozen=True)
class ReplyValueModel:
    """A fitted model: n-gram -> (idf, weight); `value` is linear in the reply's tf-idf vector."""

    idf: dict[str, float]
    weight: dict[str, float]
    mean_value: float  # the mean of w . x over the fitting replies, so that value() centres on 0
    source: str  # what it was fitted on (judge, models, reply count)

    def value(self, text: str) -> float:
        """The reply's predicted emotion change at neutral emotion, relative to an average reply."""
        tfidf = {g: (1.0 + math.log(c)) * self.idf[g] for g, c in ngram_counts(text).items() if g in self.idf}
        norm = math.sqrt(sum(v * v for v in tfidf.values()))
        if norm == 0.0:
            return 0.0
        return sum(v * self.weight[g] for g, v in tfidf.items()) / norm - self.mean_value

    def to_json(self) -> dict[str, Any]:
        grams = sorted(self.idf)
        return {
            "source": self.source,
            "mean_value": self.mean_value,
            "ngrams": grams,
            "idf": [round(self.idf[g], 5) for g in grams],
            "weight": [round(self.weight[g], 5) for g in grams],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyValueModel:
        grams = data["ngrams"]
        return cls(
            idf=dict(zip(grams, data["idf"], strict=True)),
            weight=dict(zip(grams, data["weight"], strict=True)),
            mean_value=float(data["mean_value"]),
            source=str(data["source"]),
        )


@lru_cache(maxsize=1)
def shipped_model() -> ReplyValueModel:
    """The model fitted on SAGE's DeepSeek-V3 judge and shipped in the package."""
    raw = (resources.files("sage_gym.simulators") / "data" / MODEL_FILE).read_bytes()
    return ReplyValueModel.from_json(json.loads(gzip.decompress(raw)))
