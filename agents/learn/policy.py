"""Deprecated: the policy moved to `agents.policy` (split by job: `chat_format`, `loading`,
`hf_engine`, `model`), below both the learner and the evaluator. This module re-exports its names."""

from __future__ import annotations

import warnings

from agents.policy.chat_format import CHATML_TEMPLATE, PLACEHOLDER, ChatFormat
from agents.policy.hf_engine import (
    CDF_BLOCK,
    Completion,
    HFEngine,
    Sampling,
    inverse_cdf,
    left_padded,
    positions,
    row_uniforms,
    turn_budgets,
)
from agents.policy.loading import (
    LoraSettings,
    cache_root,
    convert_gguf,
    gguf_cache_dir,
    load_pretrained,
    resolve_device,
    resolve_dtype,
    resolve_gguf,
)
from agents.policy.model import LogprobOutput, Policy, PolicyForward

__all__ = [
    "CDF_BLOCK", "CHATML_TEMPLATE", "PLACEHOLDER", "ChatFormat", "Completion", "HFEngine", "LogprobOutput", "LoraSettings", "Policy",
    "PolicyForward", "Sampling", "cache_root", "convert_gguf", "gguf_cache_dir", "inverse_cdf", "left_padded", "load_pretrained",
    "positions", "resolve_device", "resolve_dtype", "resolve_gguf", "row_uniforms", "turn_budgets",
]  # fmt: skip

warnings.warn(
    "agents.learn.policy is deprecated: import from agents.policy.model, .hf_engine, .chat_format or .loading", DeprecationWarning, stacklevel=2
)
