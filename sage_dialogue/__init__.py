"""The verifiers plugin for SageDialogue (taskset id `sage-dialogue`); see sage_gym.integrations.verifiers."""

from sage_gym.integrations.verifiers import SageDialogueTaskset, SageDialogueVfEnv

__all__ = ["SageDialogueTaskset", "SageDialogueVfEnv"]
