"""Deprecated: the library checks moved to `sage_gym.scenarios.checks`; this module re-exports it."""

import warnings

from sage_gym.scenarios import checks as _moved
from sage_gym.scenarios.checks import *  # noqa: F403

warnings.warn("sage_gym.scenario_checks is deprecated; import sage_gym.scenarios.checks instead", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> object:  # the moved module's other names, private ones included
    return getattr(_moved, name)
