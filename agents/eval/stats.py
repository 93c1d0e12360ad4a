"""How much a score can be trusted: intervals over scenarios and trials, consistency, paired tests, rank agreement.

A score is one draw: the same agent on the same scenarios moves when the simulator's (and the
agent's) sampling seeds change. These functions turn repeated trials into the numbers that say by
how much. All of them are pure and seeded, so the same inputs always give the same answer.

| function | what it gives |
|---|---|
| `hierarchical_bootstrap(values_by_scenario)` | the mean and its interval, resampling scenarios, then trials within each |
| `pass_hat_k(passed_by_scenario, k)` | the share of scenarios where k trials drawn without replacement all pass (tau-bench's pass^k) |
| `per_scenario_spread(values_by_scenario)` | how far one scenario's trials land apart (standard deviation and range) |
| `paired_bootstrap(a, b)` | the difference of two runs' means over shared scenarios, its interval (scenarios, then each run's trials), and whether it is beyond the noise |
| `kendall_tau(x, y)` | rank agreement of two score lists (tau-b, ties handled) |
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from math import comb

import numpy as np

ValuesByScenario = Mapping[str, Sequence[float]]


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _interval(draws: np.ndarray, confidence: float) -> list[float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return [round(float(low), 4), round(float(high), 4)]


def hierarchical_bootstrap(
    values_by_scenario: ValuesByScenario, *, samples: int = 2000, confidence: float = 0.95, seed: int = 0, name: str = "hierarchical"
) -> dict[str, float | list[float] | None]:
    """Mean over all trials of all scenarios, and a percentile interval from a two-level bootstrap.

    Each resample draws scenarios with replacement, then, inside each drawn scenario, its trials
    with replacement, so the interval holds both the choice of scenarios and the trial-to-trial noise.
    """
    groups = [np.asarray(v, dtype=np.float64) for _, v in sorted(values_by_scenario.items()) if len(v)]
    if not groups:
        return {"mean": None, "ci": None}
    mean = float(np.concatenate(groups).mean())
    rng = _rng(seed, name)
    padded, sizes = _padded(groups)
    draws = []
    for start in range(0, samples, 256):  # chunks keep the index arrays small
        # scenarios with replacement, then each drawn scenario's trials with replacement; the mean
        # over all drawn trials weighs each scenario by its trial count, as the plain mean does
        picked = rng.integers(0, len(groups), size=(min(256, samples - start), len(groups)))
        n = sizes[picked]
        draws.append((_resampled_means(padded, sizes, picked, rng) * n).sum(axis=1) / n.sum(axis=1))
    draws = np.concatenate(draws)
    return {"mean": round(mean, 4), "ci": _interval(draws, confidence)}


def pass_hat_k(passed_by_scenario: Mapping[str, Sequence[bool]], k: int) -> float | None:
    """tau-bench's pass^k: mean over scenarios of C(c, k) / C(n, k), with c of the n trials passing.

    With k = n it is the share of scenarios where every trial passed. Scenarios with fewer than k
    trials are left out; None when none is left.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    shares = [comb(sum(map(bool, t)), k) / comb(len(t), k) for t in passed_by_scenario.values() if len(t) >= k]
    return round(float(np.mean(shares)), 4) if shares else None


def per_scenario_spread(values_by_scenario: ValuesByScenario) -> dict[str, float | None]:
    """Mean and largest per-scenario standard deviation (ddof 0) and range of the trials."""
    groups = [np.asarray(v, dtype=np.float64) for v in values_by_scenario.values() if len(v) > 1]
    if not groups:
        return {"mean_sd": None, "max_sd": None, "mean_range": None, "max_range": None}
    sds = np.array([g.std() for g in groups])
    ranges = np.array([g.max() - g.min() for g in groups])
    return {
        "mean_sd": round(float(sds.mean()), 4),
        "max_sd": round(float(sds.max()), 4),
        "mean_range": round(float(ranges.mean()), 4),
        "max_range": round(float(ranges.max()), 4),
    }


def _resampled_means(padded: np.ndarray, sizes: np.ndarray, picked: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per drawn scenario (picked: rows x scenarios), the mean of its trials drawn with replacement."""
    n = sizes[picked]
    trial = (rng.random((*picked.shape, padded.shape[1])) * n[..., None]).astype(np.int64)
    mask = np.arange(padded.shape[1]) < n[..., None]
    return (padded[picked[..., None], trial] * mask).sum(axis=2) / n


def _padded(groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([g.size for g in groups])
    padded = np.zeros((len(groups), sizes.max()))
    for g, values in enumerate(groups):
        padded[g, : values.size] = values
    return padded, sizes


def paired_bootstrap(
    a: ValuesByScenario, b: ValuesByScenario, *, samples: int = 2000, confidence: float = 0.95, seed: int = 0, name: str = "paired"
) -> dict[str, object]:
    """Difference mean(a) - mean(b) over the scenarios present in both (each scenario's trials
    averaged first), with a percentile interval from a paired two-level bootstrap: the same
    scenarios drawn for both sides, then each side's trials of each drawn scenario drawn anew, so
    the interval holds the trial-to-trial noise of both runs as well as the choice of scenarios.
    `beyond_noise` is True when the interval excludes 0.
    """
    shared = sorted(set(k for k, v in a.items() if len(v)) & set(k for k, v in b.items() if len(v)))
    if not shared:
        raise ValueError("the two results share no scenario, so they cannot be compared pairwise")
    groups_a = [np.asarray(a[k], dtype=np.float64) for k in shared]
    groups_b = [np.asarray(b[k], dtype=np.float64) for k in shared]
    difference = float(np.mean([ga.mean() - gb.mean() for ga, gb in zip(groups_a, groups_b, strict=True)]))
    (padded_a, sizes_a), (padded_b, sizes_b) = _padded(groups_a), _padded(groups_b)
    rng = _rng(seed, name)
    draws = []
    for start in range(0, samples, 256):
        picked = rng.integers(0, len(shared), size=(min(256, samples - start), len(shared)))
        diffs = _resampled_means(padded_a, sizes_a, picked, rng) - _resampled_means(padded_b, sizes_b, picked, rng)
        draws.append(diffs.mean(axis=1))
    ci = _interval(np.concatenate(draws), confidence)
    return {"difference": round(difference, 4), "ci": ci, "scenarios": len(shared), "beyond_noise": bool(ci[0] > 0 or ci[1] < 0)}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long score lists (None when fewer than two items or a list is constant)."""
    if len(x) != len(y):
        raise ValueError(f"need equally long lists, got {len(x)} and {len(y)}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant_minus_discordant = float((dx * dy).sum())
    untied_x, untied_y = float(np.count_nonzero(dx)), float(np.count_nonzero(dy))
    if untied_x == 0 or untied_y == 0:
        return None
    return round(concordant_minus_discordant / np.sqrt(untied_x * untied_y), 4)
