"""sage_gym: a Gymnasium environment in which an agent talks with a simulated user whose emotion is the reward.

    import gymnasium as gym
    import sage_gym  # registers SageDialogue-v0 (or use gym.make("sage_gym:SageDialogue-v0"))

    env = gym.make("SageDialogue-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("That sounds exhausting. What happened?")

This package never imports torch.
"""

from __future__ import annotations

import gymnasium

from sage_gym.env import SageDialogueEnv
from sage_gym.scenarios import Scenario, ScenarioSet, load_scenarios, load_split
from sage_gym.simulators import BuiltinSimulator, Reaction, Rules, Simulator, SimulatorError, UserState, make_simulator

ENV_ID = "SageDialogue-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="sage_gym.env:SageDialogueEnv",
        vector_entry_point="sage_gym.vector:SageVectorEnv",
        disable_env_checker=False,
    )

__all__ = [
    "ENV_ID",
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
