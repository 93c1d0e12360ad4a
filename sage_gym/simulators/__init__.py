"""Simulated users: the protocol and its implementations.

| name        | class                | what it is                                                    |
|-------------|----------------------|---------------------------------------------------------------|
| `"builtin"` | `BuiltinSimulator`   | deterministic rule-based user; offline; the embedded default (SageDialogue-v0) |
| `"builtin-v1"` | `BuiltinSimulator(version=1)` | the same analysis, weighed by a fit on SAGE's recorded judgments (SageDialogue-v1) |
| `"openai"`  | `OpenAISimulator`    | an LLM behind any OpenAI-compatible endpoint                  |
"""

from __future__ import annotations

from typing import Any

from sage_gym.simulators.base import (
    Reaction,
    Rules,
    Simulator,
    SimulatorError,
    UserState,
    emotion_bucket,
    emotion_grade,
)
from sage_gym.simulators.builtin import BuiltinSimulator

SIMULATOR_NAMES = ("builtin", "builtin-v1", "openai")
# The calibrated user is SageDialogue-v1's; it stays opt-in until it defeats the attacks that the
# rule-based user defeats (docs/builtin_simulator.md section 10).
BUILTIN_VERSIONS = {"builtin": 0, "builtin-v1": 1}


def make_simulator(spec: str | Simulator = "builtin", **kwargs: Any) -> Simulator:
    """A simulator from a name ("builtin", "builtin-v1", "openai") and its keyword arguments, or an instance as is."""
    if not isinstance(spec, str):
        if kwargs:
            raise ValueError("simulator_kwargs are only used with a simulator name, not with an instance")
        if not isinstance(spec, Simulator):
            raise TypeError(f"simulator must be one of {SIMULATOR_NAMES} or implement the Simulator protocol, got {type(spec).__name__}")
        return spec
    if spec in BUILTIN_VERSIONS:
        if kwargs:
            raise ValueError(f"the built-in simulator takes no arguments, got {sorted(kwargs)}")
        return BuiltinSimulator(BUILTIN_VERSIONS[spec])
    if spec == "openai":
        from sage_gym.simulators.openai_sim import OpenAISimulator

        return OpenAISimulator(**kwargs)
    raise ValueError(f"unknown simulator {spec!r}; expected one of {SIMULATOR_NAMES} or a Simulator instance")


__all__ = [
    "BuiltinSimulator",
    "Reaction",
    "Rules",
    "SIMULATOR_NAMES",
    "Simulator",
    "SimulatorError",
    "UserState",
    "emotion_bucket",
    "emotion_grade",
    "make_simulator",
]
