"""Deprecated: moved to `agents.replies.strategies`. This module re-exports its names."""

import warnings

from agents.replies import strategies as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.strategies is deprecated: import from agents.replies.strategies", DeprecationWarning, stacklevel=2)
