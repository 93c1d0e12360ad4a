"""A stable-baselines3 strategy agent: numeric features in, a response strategy out.

A cheap baseline that needs no GPU and no language model. It sees the dialogue as a vector and
chooses one of a fixed set of response *plans* (one or two strategies of `agents.replies.baselines`,
rendered from its templates and filled with the user's own words). Any SB3 algorithm with a
`Discrete` action space can learn it through the SB3 adapter of the vectorized environment
(`sage_gym.sb3`); `python -m agents.train_sb3` trains PPO.

| | |
|---|---|
| Observation | `Box(0, 1, (FEATURES,), float32)`, see `StrategyFeatures` |
| Action | `Discrete(len(PLANS))`: plan k is `PLANS[k]`, e.g. `("reflect", "validate")` |

Observation features, in order:

| slice | feature |
|---|---|
| `latest_words` (128) | hashed bag of words of the user's latest message (CRC32 buckets, L2-normalised; Chinese text counts character bigrams as its words) |
| `user_words` (128) | the same over everything the user has said so far |
| `bucket` (3) | one-hot emotion bucket: low, medium, high (the bucket, not the number, as the simulator's reply step sees it) |
| `turn` (1) | agent turns so far / `max_turns` (capped at 1) |
| `change` (1) | the user's last emotion change mapped from [-10, 10] to [0, 1] (0.5 before the first reply) |
| `last_reply` (12) | the strategies of the agent's previous reply (`agents.replies.strategies` rule tagger) |
| `used` (12) | the strategies used in any earlier reply |

The hidden intention is never part of the observation: the agent has to read it from what the
user says (the built-in simulator's users drop hints while their wish is unmet) and from how they
react. The decoder is a pure function of the action and the dialogue so far (template choice and
filler words are seeded by the dialogue's text), so a trained agent replays exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.replies import baselines_zh
from agents.replies.baselines import render_strategy, turn_index
from agents.replies.strategies import STRATEGIES, tag_reply
from sage_gym.sb3 import NumericDialogue

# Response plans: the agent's action space. Single strategies, and an empathic opener (reflect or
# validate) paired with each strategy that can meet a hidden intention. Platitudes and dismissal
# stay in, so the agent must learn to avoid them.
PLANS: tuple[tuple[str, ...], ...] = (
    ("reflect", "validate"),
    ("reflect", "validate", "question"),
    ("reflect", "question"),
    ("reflect", "praise"),
    ("reflect", "advice"),
    ("reflect", "motives"),
    ("reflect", "dialectic"),
    ("reflect", "reflection"),
    ("reflect", "no_blame"),
    ("validate", "praise"),
    ("validate", "advice"),
    ("validate", "no_blame"),
    ("reflect",),
    ("validate",),
    ("question",),
    ("praise",),
    ("advice",),
    ("motives",),
    ("dialectic",),
    ("reflection",),
    ("no_blame",),
    ("platitude",),
    ("dismiss",),
)
HASH_BUCKETS = 128
BUCKETS = ("low", "medium", "high")
FEATURES = 2 * HASH_BUCKETS + len(BUCKETS) + 2 + 2 * len(STRATEGIES)
_WORD = re.compile(r"[a-z][a-z']+")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def words_of(text: str) -> list[str]:
    """English words, then Chinese "words": the character bigrams of each run of Han characters
    (a lone character stands for itself), since Chinese is written without spaces."""
    words = _WORD.findall(text.lower())
    for run in _HAN_RUN.findall(text):
        words += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
    return words


def hashed_words(text: str, buckets: int = HASH_BUCKETS) -> np.ndarray:
    """Bag of words hashed into `buckets` counts (CRC32: stable across processes), L2-normalised."""
    vector = np.zeros(buckets, dtype=np.float32)
    for word in words_of(text):
        vector[zlib.crc32(word.encode()) % buckets] += 1.0
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def strategy_flags(tags: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if s in tags else 0.0 for s in STRATEGIES], dtype=np.float32)


class StrategyFeatures:
    """The observation encoder: `encode(text, info)` -> float32 vector in [0, 1] (table above)."""

    def __init__(self, max_turns: int = 10) -> None:
        self.max_turns = max_turns
        self.space = spaces.Box(0.0, 1.0, (FEATURES,), np.float32)

    def __call__(self, text: str, info: Mapping[str, Any]) -> np.ndarray:
        history = info["history"]
        user_lines = [m["content"] for m in history if m["role"] == "user"]
        replies = [tag_reply(m["content"]) for m in history if m["role"] == "assistant"]
        bucket = np.array([1.0 if info["bucket"] == b else 0.0 for b in BUCKETS], dtype=np.float32)
        change = float(np.clip((info.get("change", 0) + 10) / 20, 0.0, 1.0)) if replies else 0.5
        return np.concatenate(
            [
                hashed_words(text),
                hashed_words(" ".join(user_lines)),
                bucket,
                np.array([min(1.0, info["turn"] / self.max_turns), change], dtype=np.float32),
                strategy_flags(replies[-1] if replies else ()),
                strategy_flags(sorted({s for tags in replies for s in tags})),
            ]
        ).astype(np.float32)


def render_plan(index: int, info: Mapping[str, Any]) -> str:
    """The agent's message for plan `index` in the dialogue of `info` (deterministic in both)."""
    history = info["history"]
    # seeded by the dialogue's text, so the same dialogue and plan always give the same message
    rng = np.random.default_rng(zlib.crc32(json.dumps(history, sort_keys=True).encode()))
    turn = turn_index(history)
    sentences: list[str] = []
    for strategy in PLANS[index]:
        sentences.append(render_strategy(strategy, history, rng, turn, avoid=sentences))
    return ("" if baselines_zh.speaks_chinese(history) else " ").join(sentences)


def numeric_dialogue(max_turns: int = 10) -> NumericDialogue:
    """The encoder/decoder pair for `sage_gym.sb3` (`NumericDialogueEnv`, `make_sb3_vec_env`)."""
    features = StrategyFeatures(max_turns)
    return NumericDialogue(features.space, spaces.Discrete(len(PLANS)), features, render_plan)


# ----------------------------------------------------------------------------------------------
# the evaluation agent


class SB3StrategyAgent:
    """A saved SB3 model (`train_sb3`'s `model.zip`) as an evaluation agent (`--agent sb3`).

    The features' `max_turns` comes from the `sb3_agent.json` saved beside the model (the
    training setting), so the observation means what it meant in training.
    """

    kind = "sb3"

    def __init__(self, model: str, deterministic: bool = True) -> None:
        from stable_baselines3.common.base_class import BaseAlgorithm

        path = Path(model)
        meta_path = path.with_name("sb3_agent.json")
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        algorithm = _algorithm_class(self.meta.get("algorithm", "PPO"))
        self.model: BaseAlgorithm = algorithm.load(str(path), device="cpu")
        self.numeric = numeric_dialogue(self.meta.get("max_turns", 10))
        if self.model.observation_space.shape != self.numeric.observation_space.shape or self.model.action_space.n != len(PLANS):
            raise ValueError(
                f"{path} was trained with observations {self.model.observation_space.shape} and {self.model.action_space} actions, "
                f"but this code has {self.numeric.observation_space.shape} and {len(PLANS)}: retrain it with python -m agents.train_sb3"
            )
        self.path, self.deterministic = path, deterministic
        self.name = f"sb3-{self.meta.get('algorithm', 'PPO').lower()}"

    def begin(self, slot: int, seed: int) -> None:
        """Nothing to set up: the policy and the decoder are functions of the dialogue so far."""

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        observations = np.stack([self.numeric.observe(info["history"][-1]["content"], info) for info in infos])
        actions, _ = self.model.predict(observations, deterministic=self.deterministic)
        return [self.numeric.act(action, info) for action, info in zip(actions, infos, strict=True)]

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "model": str(self.path),
            "model_sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
            "deterministic": self.deterministic,
            "plans": [list(plan) for plan in PLANS],
            "training": self.meta,
        }


def _algorithm_class(name: str) -> Any:
    import stable_baselines3

    try:
        return getattr(stable_baselines3, name)
    except AttributeError:
        raise ValueError(f"unknown stable-baselines3 algorithm {name!r}") from None
