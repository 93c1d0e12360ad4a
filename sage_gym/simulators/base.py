"""The Simulator protocol: pure data in, pure data out.

A simulator opens a dialogue for a scenario (`open`) and, for each agent reply, says how the
simulated user reacts (`react`). It never mutates its inputs: `react` returns the next
`UserState` inside the `Reaction`, so a failed call (a raised `SimulatorError`) leaves the
dialogue exactly as it was and the same step can be retried.

History is the visible dialogue in OpenAI chat format *from the agent's side*: the simulated
user's lines have role "user", the agent's replies role "assistant".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sage_gym._frozen import FrozenDict, freeze
from sage_gym.scenarios import Scenario

# Emotion scale (docs/environment.md). Buckets are what the reply step sees instead of the number;
# grades are SAGE's report scale.
EMOTION_MIN, EMOTION_MAX = 0, 100
BUCKET_THRESHOLDS = (("high", 70), ("medium", 40), ("low", 0))
GRADE_THRESHOLDS = (("S", 100), ("A", 70), ("B", 40), ("C", 10), ("F", 0))

Message = Mapping[str, str]  # {"role": "user" | "assistant" | "system", "content": str}


def clamp_emotion(value: float) -> int:
    return int(min(EMOTION_MAX, max(EMOTION_MIN, round(value))))


def emotion_bucket(emotion: float) -> str:
    """"high" (>= 70), "medium" (>= 40) or "low" (< 40)."""
    return next(name for name, low in BUCKET_THRESHOLDS if emotion >= low)


def emotion_grade(emotion: float) -> str:
    """SAGE's grade: S >= 100, A >= 70, B >= 40, C >= 10, F < 10."""
    return next(name for name, low in GRADE_THRESHOLDS if emotion >= low)


@dataclass(frozen=True)
class Rules:
    """The dialogue's rules, fixed at `open` (SAGE evaluation defaults)."""

    initial_emotion: int = 40
    change_clip: tuple[int, int] = (-10, 10)
    success_at: int = 100  # the user thanks the agent and says goodbye
    failure_below: int = 10  # the user walks out

    def __post_init__(self) -> None:
        low, high = self.change_clip
        if not (isinstance(low, int) and isinstance(high, int) and low <= 0 <= high and low < high):
            raise ValueError(f"change_clip must be two integers (low <= 0 <= high, low < high), got {self.change_clip!r}")
        if not EMOTION_MIN <= self.initial_emotion <= EMOTION_MAX:
            raise ValueError(f"initial_emotion must be in [0, 100], got {self.initial_emotion!r}")
        if not EMOTION_MIN <= self.failure_below < self.success_at <= EMOTION_MAX:
            raise ValueError(f"need 0 <= failure_below < success_at <= 100, got {self.failure_below!r} and {self.success_at!r}")
        if not self.failure_below <= self.initial_emotion < self.success_at:
            raise ValueError(f"initial_emotion {self.initial_emotion} must lie in [failure_below, success_at)")

    def clip(self, change: float) -> int:
        low, high = self.change_clip
        return int(min(high, max(low, round(change))))


class SimulatorError(RuntimeError):
    """A simulator could not produce a valid reaction. The dialogue's state is unchanged."""


@dataclass(frozen=True)
class UserState:
    """The simulated user's state between turns.

    `seed` fixes everything random about this dialogue (together with `turn`), so a state is a
    complete, replayable description. `memory` is the simulator's own scratchpad (immutable).
    """

    emotion: int
    rules: Rules = Rules()
    turn: int = 0
    seed: int = 0
    memory: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "memory", freeze(self.memory))


@dataclass(frozen=True)
class Reaction:
    """How the user reacted to one agent reply.

    `change` is the signed change the simulator decided, already clipped to the configured range;
    `emotion` is the new score, previous + change capped to [0, 100] (so at the caps the realised
    difference can be smaller than `change`). `leaves` is True when the user ends the dialogue
    (a goodbye at 100, walking out below the failure threshold, or leaving of their own accord).
    """

    emotion: int
    change: int
    bucket: str
    thoughts: str
    reply: str
    leaves: bool
    state: UserState
    analysis: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "analysis", freeze(self.analysis))


@runtime_checkable
class Simulator(Protocol):
    """What the environment needs from a simulated user. Implementations are async."""

    #: "builtin", "openai", ... recorded in transcripts and manifests
    kind: str

    async def open(self, scenario: Scenario, rng: np.random.Generator, rules: Rules) -> UserState:
        """Start a dialogue at `rules.initial_emotion`; the user's first message is `scenario.first_message`."""
        ...

    async def react(self, scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str) -> Reaction:
        """The user's reaction to `agent_reply`, given the visible `history` before it.

        Raises SimulatorError on failure and must not mutate `state` or `history`.
        """
        ...

    def manifest(self) -> dict[str, Any]:
        """Everything that determines this simulator's behaviour (kind, model, sampling), no secrets."""
        ...
