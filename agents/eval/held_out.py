"""Deprecated: moved to `agents.eval.held_out_simulators`. This module re-exports its names."""

import warnings

from agents.eval import held_out_simulators as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn("agents.eval.held_out is deprecated: import from agents.eval.held_out_simulators", DeprecationWarning, stacklevel=2)
