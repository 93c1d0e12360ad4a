"""Deprecated: moved to `agents.policy.models`. This module re-exports its names."""

import warnings

from agents.policy import models as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.learn.models is deprecated: import from agents.policy.models", DeprecationWarning, stacklevel=2)
