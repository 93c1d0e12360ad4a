"""Measure a simulated user against SAGE's recorded judgments (docs/calibration.md)."""

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

__all__ = ["FITTING_JUDGE", "HELD_OUT_JUDGE", "Dialogue", "SageDataError", "Turn", "load_results", "load_vendored", "pack"]
