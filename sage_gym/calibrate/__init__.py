"""Measure a simulated user against SAGE's recorded judgments (docs/calibration.md).

    from sage_gym.calibrate import load_vendored, measure
    result = measure(load_vendored(), "builtin")      # the DeepSeek-V3 judge's dialogues: the fitting data
    print(result.kendall_tau, result.first_reply_concordance, result.spearman)

`load_vendored(judge="gpt-4o")` gives the held-out judge's dialogues: report on them, never fit.
"""

from sage_gym.calibrate.data import (
    FITTING_JUDGE,
    HELD_OUT_JUDGE,
    Dialogue,
    SageDataError,
    Turn,
    load_results,
    load_vendored,
    pack,
)
from sage_gym.calibrate.measure import (
    Interval,
    Measurement,
    ModelRow,
    kendall_tau_b,
    measure,
    predict_changes,
    predict_changes_async,
    spearman,
    summarize,
)

__all__ = [
    "FITTING_JUDGE",
    "HELD_OUT_JUDGE",
    "Dialogue",
    "Interval",
    "Measurement",
    "ModelRow",
    "SageDataError",
    "Turn",
    "kendall_tau_b",
    "load_results",
    "load_vendored",
    "measure",
    "pack",
    "predict_changes",
    "predict_changes_async",
    "spearman",
    "summarize",
]
