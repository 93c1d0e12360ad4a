"""Trials, pass^k, paired bootstrap and Kendall's tau, against numbers worked out by hand."""

import numpy as np
import pytest

from agents.eval.stats import hierarchical_bootstrap, kendall_tau, paired_bootstrap, pass_hat_k, per_scenario_spread


def test_pass_hat_k_by_hand():
    passed = {"a": [True, True, True], "b": [True, False, True], "c": [False, False, False]}
    assert pass_hat_k(passed, 3) == round(1 / 3, 4)  # only "a" passes every trial
    assert pass_hat_k(passed, 1) == round((1 + 2 / 3 + 0) / 3, 4)  # the plain pass rate
    assert pass_hat_k(passed, 2) == round((1 + 1 / 3 + 0) / 3, 4)  # C(2,2)/C(3,2) for "b"
    assert pass_hat_k({"a": [True]}, 2) is None
    with pytest.raises(ValueError):
        pass_hat_k(passed, 0)


def test_spread_and_hierarchical_bootstrap():
    values = {"a": [10, 30], "b": [50, 50], "c": [0, 100]}
    assert per_scenario_spread(values) == {"mean_sd": 20.0, "max_sd": 50.0, "mean_range": 40.0, "max_range": 100.0}
    result = hierarchical_bootstrap(values, samples=500, seed=1)
    assert result["mean"] == 40.0 and result["ci"][0] < 40 < result["ci"][1]
    assert result == hierarchical_bootstrap(values, samples=500, seed=1)  # seeded
    # no noise at all: every resample gives the same mean
    assert hierarchical_bootstrap({"a": [7, 7], "b": [7]}, samples=50)["ci"] == [7.0, 7.0]
    # trial noise widens the interval even when scenario means agree
    flat = hierarchical_bootstrap({"a": [50, 50], "b": [50, 50]}, samples=300)
    noisy = hierarchical_bootstrap({"a": [0, 100], "b": [0, 100]}, samples=300)
    assert flat["ci"] == [50.0, 50.0] and noisy["ci"][1] - noisy["ci"][0] > 20


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    base = {f"s{i}": [float(x)] for i, x in enumerate(rng.uniform(0, 100, 40))}
    better = {k: [v[0] + 10 + rng.normal(0, 3)] for k, v in base.items()}
    same = {k: [v[0] + rng.normal(0, 3)] for k, v in base.items()}
    diff = paired_bootstrap(better, base)
    assert diff["beyond_noise"] and 8 < diff["difference"] < 12 and diff["scenarios"] == 40
    assert not paired_bootstrap(same, base)["beyond_noise"]
    assert paired_bootstrap({"x": [1], "s0": [5.0]}, base)["scenarios"] == 1
    with pytest.raises(ValueError, match="share no scenario"):
        paired_bootstrap({"x": [1]}, {"y": [1]})


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == round(1 / 3, 4)  # 2 concordant, 1 discordant
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == round(2 / np.sqrt(2 * 3), 4)  # tau-b with a tie in x
    assert kendall_tau([1, 1], [1, 2]) is None
