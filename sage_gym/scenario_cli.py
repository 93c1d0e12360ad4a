"""Deprecated: the command line moved to `sage_gym.scenarios.cli`; this module re-exports it."""

import warnings

from sage_gym.scenarios import cli as _moved
from sage_gym.scenarios.cli import *  # noqa: F403

warnings.warn("sage_gym.scenario_cli is deprecated; import sage_gym.scenarios.cli instead", DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> object:  # the moved module's other names, private ones included
    return getattr(_moved, name)
