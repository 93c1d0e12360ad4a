"""What SAGE's LLM users made of replies like this one: the recorded changes of its nearest neighbours.

SAGE published its benchmark dialogues: frontier models talking with LLM-simulated Chinese users,
every reply followed by the user's emotion. The *bank* is every reply of the DeepSeek-V3 judge's
dialogues (the copy that ships in `sage_gym/calibrate/data/`), each as its vector in the
multilingual sentence embedding of `sage_gym.embedding`, with the change its recorded user gave
it (less the momentum SAGE's changes carry: a user already warm warms further, so the change is
taken back to the neutral emotion 40) and its cosine with what the user had just said.

A new reply's value is

    mean(change of its K nearest bank replies) + topical_weight * (its cosine with the user's last
    message - the mean of those neighbours' cosines with theirs) - mean_value

in emotion points per reply, centred on the bank's average reply. A reply after the first is
valued from bank replies after the first only: an invitation to tell the story ("can you tell me
what happened?") is what SAGE's users liked as a first reply, not once the story is told, and a
vague line that reads like one earned those first replies' changes at any turn (docs/attacks.md).
A first reply is valued from the whole bank. It can be no higher than what
frontier replies near it earned from SAGE's users, so text that no frontier model would write earns
what the replies it happens to land near earned, not what a direction in the embedding promises (a
ridge on the embedding was exploited within 700 evaluations of a search: docs/attacks.md). The
topical term says whether the reply is about *this* user's words, which the neighbours cannot
(they answered other users). English and Chinese land in one embedding space, so the bank of
Chinese judgments reads English replies too; docs/builtin_simulator.md section 10 says what that
transfers and what it cannot know.

`K`, `momentum_weight`, `topical_weight` and `mean_value` are fitted by `sage_gym.calibrate.fit`
(`python -m sage_gym.calibrate fit`) on the DeepSeek-V3 judge only; the GPT-4o judge's dialogues are
held out. The bank's vectors are built from the vendored dialogues on first use (about 15 seconds)
and kept in the embedding's cache folder.

Per reply: one embedding look-up per text (cached) and a product of the bank (7,836 x 512) with the
reply's vector.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "reply_value.json.gz"
NEUTRAL_EMOTION = 40
MOMENTUM_SCALE = 20.0  # the emotion covariate is (emotion - 40) / 20
BANK_FORMAT = "v2"  # the cached bank's fields (v2: with each reply's turn)
IDENTICAL = 0.9999  # a bank reply this close is the reply itself: never its own neighbour


@dataclass(frozen=True)
class Bank:
    """SAGE's judged replies as the value reads them."""

    vectors: np.ndarray  # (n, 512) float32 unit vectors of the replies
    said: np.ndarray  # (n, 512) float32 unit vectors of what the user said last before each
    changes: np.ndarray  # (n,) recorded emotion changes
    before: np.ndarray  # (n,) the user's emotion when the reply came
    models: np.ndarray  # (n,) the frontier model that wrote each reply
    turns: np.ndarray  # (n,) how many replies came before each in its dialogue (0: a first reply)

    @cached_property  # read on every reply valued: computed once per bank
    def topical(self) -> np.ndarray:
        """Each bank reply's cosine with what its user said."""
        return np.einsum("ij,ij->i", self.vectors, self.said)


def said_before(history: Sequence[Mapping[str, str]]) -> str:
    """What the user said last in a history of {"role", "content"} messages."""
    return next((m["content"] for m in reversed(history) if m["role"] == "user"), "")


def replies_before(history: Sequence[Mapping[str, str]]) -> int:
    """How many agent replies a history already holds (0 before the first reply)."""
    return sum(1 for m in history if m["role"] == "assistant")


def build_bank(turns: Sequence[tuple[str, Any]]) -> Bank:
    """The bank of judged replies: (model, `sage_gym.calibrate.data.Turn`) pairs."""
    from sage_gym import embedding  # the [embed] extra: needed by the calibrated user only

    return Bank(
        vectors=embedding.encode([t.reply for _, t in turns]),
        said=embedding.encode([said_before(t.history) for _, t in turns]),
        changes=np.array([t.change for _, t in turns], dtype=np.float64),
        before=np.array([t.emotion_before for _, t in turns], dtype=np.float64),
        models=np.array([m for m, _ in turns]),
        turns=np.array([t.index - 1 for _, t in turns], dtype=np.int64),
    )


def _bank_cache_path(source: Path) -> Path:
    from sage_gym import embedding

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return embedding.table_path().parent / f"sage_bank_{BANK_FORMAT}_{digest}.npz"


@lru_cache(maxsize=1)
def shipped_bank() -> Bank:
    """The bank of the vendored DeepSeek-V3 judge's dialogues, built once and cached on disk."""
    from sage_gym.calibrate.data import FITTING_JUDGE, load_vendored, vendored_path

    path = _bank_cache_path(vendored_path(FITTING_JUDGE))
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Bank(z["vectors"], z["said"], z["changes"], z["before"], z["models"], z["turns"])
    bank = build_bank([(d.model, t) for d in load_vendored() for t in d.turns])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, vectors=bank.vectors, said=bank.said, changes=bank.changes, before=bank.before, models=bank.models, turns=bank.turns)
    os.replace(tmp.name, path)  # atomic: processes that build at once never read half a file
    return bank


@dataclass(frozen=True)
class ReplyValueModel:
    """The fitted constants of the nearest-neighbour value; the bank is `shipped_bank()` unless given."""

    k: int  # neighbours averaged
    momentum_weight: float  # emotion points of change per (emotion - 40) / 20, taken out of the bank's changes
    topical_weight: float  # per unit of cosine between the reply and the user's last message
    mean_value: float  # the mean value over the bank (each reply's neighbours from other models), so that value() centres on 0
    source: str  # what it was fitted on (judge, models, reply count)

    def neutral_changes(self, bank: Bank) -> np.ndarray:
        """The bank's recorded changes taken back to the neutral emotion."""
        return bank.changes - self.momentum_weight * (bank.before - NEUTRAL_EMOTION) / MOMENTUM_SCALE

    def values_of(
        self, vectors: np.ndarray, said: np.ndarray, turns: np.ndarray, bank: Bank, exclude_models: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Values of many replies given as unit vectors (with what their users said and how many
        replies came before each), from `bank`; `exclude_models[i]` keeps that model's replies out
        of reply i's neighbours."""
        neutral, bank_topical = self.neutral_changes(bank), bank.topical
        sims = vectors.astype(np.float32) @ bank.vectors.T
        sims[sims >= IDENTICAL] = -np.inf
        sims[np.ix_(np.asarray(turns) > 0, bank.turns == 0)] = -np.inf  # a later reply: later replies' judgments only
        if exclude_models is not None:
            for i, model in enumerate(exclude_models):
                if model is not None:
                    sims[i, bank.models == model] = -np.inf
        nearest = np.argpartition(-sims, self.k, axis=1)[:, : self.k]
        topical = np.einsum("ij,ij->i", vectors, said)
        return neutral[nearest].mean(axis=1) + self.topical_weight * (topical - bank_topical[nearest].mean(axis=1)) - self.mean_value

    def value(self, reply: str, history: Sequence[Mapping[str, str]]) -> float:
        """The reply's value at neutral emotion after `history` (the dialogue so far, {"role",
        "content"} messages), relative to an average frontier reply (0 for an empty reply: the
        guard flags judge those)."""
        from sage_gym import embedding

        if not reply.strip():
            return 0.0
        vectors = embedding.encode([reply, said_before(history)])
        return float(self.values_of(vectors[:1], vectors[1:], np.array([replies_before(history)]), shipped_bank())[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "k": self.k,
            "momentum_weight": round(self.momentum_weight, 6),
            "topical_weight": round(self.topical_weight, 6),
            "mean_value": round(self.mean_value, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyValueModel:
        return cls(int(data["k"]), float(data["momentum_weight"]), float(data["topical_weight"]), float(data["mean_value"]), str(data["source"]))


@lru_cache(maxsize=1)
def shipped_model() -> ReplyValueModel:
    """The constants fitted on SAGE's DeepSeek-V3 judge and shipped in the package."""
    raw = (resources.files("sage_gym.simulators") / "data" / MODEL_FILE).read_bytes()
    return ReplyValueModel.from_json(json.loads(gzip.decompress(raw)))
