"""Deprecated: the held-out *users* check during training moved to `agents.learn.held_out_users`
(what is played and logged) and `agents.eval.live_policy` (how the live policy is played, which
the training commands hand the trainer). This module re-exports the former's names."""

import warnings

from agents.learn import held_out_users as _moved

globals().update({name: value for name, value in vars(_moved).items() if not name.startswith("__")})

warnings.warn(
    "agents.learn.held_out is deprecated: import from agents.learn.held_out_users (the trainer's side) "
    "or agents.eval.live_policy (PolicyAgent, play_policy)", DeprecationWarning, stacklevel=2,
)
