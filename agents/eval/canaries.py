"""Deprecated: moved to `agents.replies.canaries`. This module re-exports its names."""

import warnings

from agents.replies import canaries as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.canaries is deprecated: import from agents.replies.canaries", DeprecationWarning, stacklevel=2)
