"""What SAGE's LLM users make of a reply's meaning: a linear model on a multilingual sentence embedding.

SAGE published its benchmark dialogues: frontier models talking with LLM-simulated Chinese users,
every reply followed by the user's emotion. The model here reads a reply through the multilingual
sentence embedding of `sage_gym.embedding` (Universal Sentence Encoder multilingual, made static):
the reply's unit vector, and its cosine with the user's last message (is it about what the user
said?). A ridge regression on those predicts the emotion change the recorded DeepSeek-V3 user gave
the reply, with the user's emotion before the reply as a covariate (SAGE's changes carry momentum:
a user already warm warms further) that is then held at the neutral 40. Only the reply's own value
is kept: `value(reply, said)` is the predicted change at neutral emotion minus the model's mean
over the fitting replies, in emotion points per reply.

It is fitted on the DeepSeek-V3 judge's dialogues only (`sage_gym.calibrate.fit`, run by
`python -m sage_gym.calibrate fit`); the GPT-4o judge's dialogues are held out to measure it.
Because English and Chinese land in one embedding space, a model fitted on Chinese judgments reads
English replies too: what it transfers and what it cannot know is in docs/builtin_simulator.md
section 10 (it was fitted on frontier models' replies, so text unlike any of them, such as
nonsense, is read through what it is nearest to; the guard flags handle what the rules can see).

Cheap: one embedding look-up per text (cached) and two dot products of 512 numbers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

MODEL_FILE = "reply_value.json.gz"
NEUTRAL_EMOTION = 40
MOMENTUM_SCALE = 20.0  # the emotion covariate is (emotion - 40) / 20


def reply_features(replies: Sequence[str], said: Sequence[str]) -> np.ndarray:
    """Rows of the model's inputs: the reply's embedding (512) and its cosine with what the user said."""
    from sage_gym import embedding  # the [embed] extra: needed by the calibrated user only

    reply_vectors, said_vectors = embedding.encode(list(replies)), embedding.encode(list(said))
    topical = np.einsum("ij,ij->i", reply_vectors, said_vectors)[:, None]
    return np.hstack([reply_vectors.astype(np.float64), topical.astype(np.float64)])


@dataclass(frozen=True)
class ReplyValueModel:
    """A fitted model: `value` is linear in the reply's embedding and its cosine with the user's words."""

    weight: np.ndarray  # one per embedding dimension
    topical_weight: float  # per unit of cosine between the reply and the user's last message
    mean_value: float  # the mean of the linear part over the fitting replies, so that value() centres on 0
    source: str  # what it was fitted on (judge, models, reply count)

    def value(self, reply: str, said: str) -> float:
        """The reply's predicted emotion change at neutral emotion, relative to an average reply
        (0 for an empty reply: the guard flags judge those)."""
        if not reply.strip():
            return 0.0
        row = reply_features([reply], [said])[0]
        return float(row[:-1] @ self.weight + row[-1] * self.topical_weight) - self.mean_value

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mean_value": round(self.mean_value, 6),
            "topical_weight": round(self.topical_weight, 6),
            "weight": [round(float(w), 6) for w in self.weight],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyValueModel:
        return cls(
            weight=np.asarray(data["weight"], dtype=np.float64),
            topical_weight=float(data["topical_weight"]),
            mean_value=float(data["mean_value"]),
            source=str(data["source"]),
        )


@lru_cache(maxsize=1)
def shipped_model() -> ReplyValueModel:
    """The model fitted on SAGE's DeepSeek-V3 judge and shipped in the package."""
    raw = (resources.files("sage_gym.simulators") / "data" / MODEL_FILE).read_bytes()
    return ReplyValueModel.from_json(json.loads(gzip.decompress(raw)))
