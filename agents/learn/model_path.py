"""Deprecated: moved to `agents.policy.model_path`. This module re-exports its names."""

import warnings

from agents.policy import model_path as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.learn.model_path is deprecated: import from agents.policy.model_path", DeprecationWarning, stacklevel=2)
