"""Deprecated: moved to `agents.policy.run_folder`. This module re-exports its names."""

import warnings

from agents.policy import run_folder as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.learn.run_folder is deprecated: import from agents.policy.run_folder", DeprecationWarning, stacklevel=2)
