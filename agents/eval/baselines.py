"""Deprecated: moved to `agents.replies.baselines`. This module re-exports its names."""

import warnings

from agents.replies import baselines as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.baselines is deprecated: import from agents.replies.baselines", DeprecationWarning, stacklevel=2)
