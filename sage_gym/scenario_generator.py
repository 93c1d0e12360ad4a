"""Deprecated: the scenario generator moved to `sage_gym.scenarios.generator`; this module re-exports it."""

import warnings

from sage_gym.scenarios import generator as _moved
from sage_gym.scenarios.generator import *  # noqa: F403

warnings.warn("sage_gym.scenario_generator is deprecated; import sage_gym.scenarios.generator instead", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> object:  # the moved module's other names, private ones included
    return getattr(_moved, name)
