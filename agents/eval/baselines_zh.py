"""Deprecated: moved to `agents.replies.baselines_zh`. This module re-exports its names."""

import warnings

from agents.replies import baselines_zh as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.baselines_zh is deprecated: import from agents.replies.baselines_zh", DeprecationWarning, stacklevel=2)
