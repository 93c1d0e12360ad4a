"""Step 1 of the default GRPO and PPO runs (and two variants) logs the golden metrics and saves the golden weights.

The values were recorded by `python -m tests.golden_step1 --write` (see that module); a change
of the learner that is meant to change behaviour records them again, in the same commit. They
hold on the machine that recorded them: another CPU or torch build may differ in the last bits.
"""

from __future__ import annotations

import json

import pytest

from tests.golden_step1 import GOLDEN, RUNS, differences, record

pytestmark = pytest.mark.slow  # four one-step runs: about two minutes on one CPU core


@pytest.mark.parametrize("name", list(RUNS))
def test_step_one_matches_the_golden_values(name):
    expected = json.loads(GOLDEN.read_text())
    assert name in expected, f"{name} has no golden values: python -m tests.golden_step1 --write"
    assert differences({name: expected[name]}, record([name])) == []
