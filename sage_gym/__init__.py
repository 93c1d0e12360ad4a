"""sage_gym: a Gymnasium environment in which an agent talks with a simulated user whose emotion is the reward.

    import gymnasium as gym
    import sage_gym  # registers SageDialogue-v0 (or use gym.make("sage_gym:SageDialogue-v0"))

    env = gym.make("SageDialogue-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("That sounds exhausting. What happened?")

This package never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

# Public names, imported on first use (PEP 562) so that `import sage_gym` stays light.
_EXPORTS = {
    "SageDialogueEnv": "sage_gym.env",
    "Scenario": "sage_gym.scenarios",
    "ScenarioSet": "sage_gym.scenarios",
    "load_scenarios": "sage_gym.scenarios",
    "load_split": "sage_gym.scenarios",
    "BuiltinSimulator": "sage_gym.simulators",
    "Reaction": "sage_gym.simulators",
    "Rules": "sage_gym.simulators",
    "Simulator": "sage_gym.simulators",
    "SimulatorError": "sage_gym.simulators",
    "UserState": "sage_gym.simulators",
    "make_simulator": "sage_gym.simulators",
    "SageVectorEnv": "sage_gym.vector",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sage_gym' has no attribute {name!r}")


# Versioned as Gymnasium does. SageDialogue-v1, whose user is the calibrated one
# (simulator="builtin-v1"), is registered when that user defeats the attacks the rule-based user
# defeats (docs/builtin_simulator.md section 10): registered now, Gymnasium would tell every user
# of v0 to upgrade to it.
ENV_ID = "SageDialogue-v0"
ENV_VERSIONS: dict[str, dict[str, str]] = {"SageDialogue-v0": {}}

for _env_id, _defaults in ENV_VERSIONS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point="sage_gym.env:SageDialogueEnv",
            vector_entry_point="sage_gym.vector:SageVectorEnv",
            disable_env_checker=False,
            kwargs=dict(_defaults),
        )

__all__ = [
    "ENV_ID",
    "SageVectorEnv",
    "BuiltinSimulator",
    "Reaction",
    "Rules",
    "SageDialogueEnv",
    "Scenario",
    "ScenarioSet",
    "Simulator",
    "SimulatorError",
    "UserState",
    "load_scenarios",
    "load_split",
    "make_simulator",
]
__version__ = "0.1.0"
