"""Deprecated: moved to `agents.replies.endpoint`. This module re-exports its names."""

import warnings

from agents.replies import endpoint as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.endpoint is deprecated: import from agents.replies.endpoint", DeprecationWarning, stacklevel=2)
