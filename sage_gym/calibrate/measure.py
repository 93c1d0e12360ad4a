"""How far a simulated user's emotion changes agree with SAGE's recorded ones.

Teacher forcing: every recorded assistant reply goes, in its recorded history, through the public
`Simulator` protocol (`open` once per dialogue, then `react` per reply), with the user's state at
a fixed emotion (40, neutral: only the reply is judged) or at the recorded one. The simulator's
own state (its memory, the turn) follows the recorded dialogue from reply to reply.

`predict_changes` plays the replies; `summarize` turns changes into the figures (it takes any
changes, e.g. a fitted model's predictions); `measure` does both. The figures, each with a
bootstrap interval over profiles (resample profile ids with replacement, recompute):

- per model: SAGE's score (mean final emotion), our and the recorded mean change per reply, and
  both by turn;
- `kendall_tau`: Kendall's tau-b between the models' mean change under our user and their SAGE
  scores;
- `first_reply_concordance`: within each profile, every pair of models' first replies (same user,
  same opening, same emotion): the share of pairs our changes order like the recorded changes
  (a tie in ours counts half; pairs the recorded changes tie are skipped);
- `spearman`: Spearman's rank correlation between our and the recorded change, over all replies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from sage_gym._loop import run_sync
from sage_gym.calibrate.data import FITTING_JUDGE, Dialogue, load_vendored
from sage_gym.simulators import Simulator, SimulatorError, make_simulator
from sage_gym.simulators.base import Rules

NEUTRAL_EMOTION = 40
RECORDED = "recorded"


@dataclass(frozen=True)
class Interval:
    """A figure and its 95% bootstrap interval (percentiles over resampled profiles)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class ModelRow:
    model: str
    dialogues: int
    replies: int  # replies with a recorded reaction (and, for ours, a change from the simulator)
    sage_score: float  # mean final emotion of the model's dialogues
    our_change: float  # mean change per reply under the measured user
    recorded_change: float  # ... and under SAGE's recorded user
    our_by_turn: tuple[float, ...]  # mean change at reply 1, 2, ... (nan where the model has none)
    recorded_by_turn: tuple[float, ...]


@dataclass(frozen=True)
class Measurement:
    judge: str
    simulator: str  # the simulator's kind
    emotion: str  # "40" (or another fixed emotion) or "recorded"
    profiles: int
    dialogues: int
    replies: int
    errors: int  # replies the simulator failed on (a failed reply ends its dialogue's measurement)
    models: tuple[ModelRow, ...]  # ordered by SAGE score, best first
    kendall_tau: Interval
    first_reply_concordance: Interval
    spearman: Interval
    bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# rank statistics (numpy only: the core install has no scipy)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, ties sharing their average rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inverse]).astype(float)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks (nan when either side is constant)."""
    rx, ry = average_ranks(np.asarray(x, float)), average_ranks(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the last axis of `x` against `y` (rows: bootstrap samples), ties corrected.

    Entries that are nan (a model absent from a resample) are left out of their row.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    valid = ~(np.isnan(sx) | np.isnan(sy))
    sx, sy = np.where(valid, sx, 0.0), np.where(valid, sy, 0.0)
    pairs = valid.sum(axis=1)
    untied_x, untied_y = (sx != 0).sum(axis=1), (sy != 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((untied_x > 0) & (untied_y > 0) & (pairs > 0), (sx * sy).sum(axis=1) / np.sqrt(untied_x * untied_y), np.nan)


# ----------------------------------------------------------------------------------------------
# playing the recorded replies


def profile_seed(profile_id: str) -> int:
    """The user's seed for a profile: the same for every model's dialogue, so their first replies meet the same user."""
    return int.from_bytes(hashlib.sha256(profile_id.encode("utf-8")).digest()[:8], "little")


async def _play(dialogue: Dialogue, simulator: Simulator, emotion: int | str, rules: Rules, progress: tqdm) -> tuple[list[float], int]:
    """Our change for each judged reply of `dialogue` (nan after a failure) and the number of failures."""
    changes = [float("nan")] * len(dialogue.turns)
    try:
        state = await simulator.open(dialogue.scenario, np.random.default_rng(profile_seed(dialogue.profile_id)), rules)
    except SimulatorError:
        progress.update(len(changes))
        return changes, len(changes)
    for k, turn in enumerate(dialogue.turns):
        start = turn.emotion_before if emotion == RECORDED else int(emotion)
        try:
            reaction = await simulator.react(dialogue.scenario, dataclasses.replace(state, emotion=start), turn.history, turn.reply)
        except SimulatorError:
            progress.update(len(changes) - k)
            return changes, len(changes) - k
        changes[k] = float(reaction.change)
        state = reaction.state
        progress.update(1)
    return changes, 0


async def predict_changes_async(
    dialogues: Sequence[Dialogue], simulator: Simulator, *, emotion: int | str = NEUTRAL_EMOTION, concurrency: int = 16, progress: bool = False
) -> tuple[list[list[float]], int]:
    """Our change for every judged reply, per dialogue, and the number of replies the simulator failed on."""
    rules = Rules()
    limit = asyncio.Semaphore(concurrency)  # bounded: an LLM simulator's endpoint sees at most this many dialogues at once
    bar = tqdm(total=sum(len(d.turns) for d in dialogues), desc="replies", unit="reply", file=sys.stderr, disable=not progress, mininterval=1.0)

    async def one(dialogue: Dialogue) -> tuple[list[float], int]:
        async with limit:
            return await _play(dialogue, simulator, emotion, rules, bar)

    try:
        results = await asyncio.gather(*(one(d) for d in dialogues))
    finally:
        bar.close()
    return [changes for changes, _ in results], sum(failed for _, failed in results)


def predict_changes(dialogues: Sequence[Dialogue], simulator: Simulator, **kwargs: Any) -> tuple[list[list[float]], int]:
    """`predict_changes_async` from synchronous code (on sage_gym's background loop, like the env)."""
    return run_sync(predict_changes_async(dialogues, simulator, **kwargs))


# ----------------------------------------------------------------------------------------------
# the figures


def _interval(value: float, samples: np.ndarray) -> Interval:
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return Interval(value, float("nan"), float("nan"))
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(float(value), float(low), float(high))


@dataclass
class _Tally:
    """The judged replies summed per (profile, model), so that a resample of profiles is a weighted sum."""

    ours_sum: np.ndarray  # (profiles, models): our changes
    ours_n: np.ndarray
    score_sum: np.ndarray  # (profiles, models): SAGE's scores of the dialogues
    score_n: np.ndarray
    by_turn: np.ndarray  # (models, turns, 4): our sum, our count, recorded sum, recorded count
    recorded_sum: np.ndarray  # (models,): the recorded changes, judged by us or not
    recorded_n: np.ndarray
    reply_profiles: list[int]  # per reply judged by us: its profile, our change, the recorded change
    our_reply_changes: list[float]
    recorded_reply_changes: list[int]
    first: dict[tuple[int, int], tuple[float, int]]  # (profile, model) -> (our, recorded) change of the first reply
    n_turns: int  # the most replies judged in one dialogue


def _tally(dialogues: Sequence[Dialogue], our_changes: Sequence[Sequence[float]], profiles: Sequence[str], models: Sequence[str]) -> _Tally:
    m_index, p_index = {m: i for i, m in enumerate(models)}, {p: i for i, p in enumerate(profiles)}
    n_models, n_profiles = len(models), len(profiles)
    n_turns = max((len(d.turns) for d in dialogues), default=0)
    t = _Tally(
        ours_sum=np.zeros((n_profiles, n_models)),
        ours_n=np.zeros((n_profiles, n_models)),
        score_sum=np.zeros((n_profiles, n_models)),
        score_n=np.zeros((n_profiles, n_models)),
        by_turn=np.zeros((n_models, max(n_turns, 1), 4)),
        recorded_sum=np.zeros(n_models),
        recorded_n=np.zeros(n_models),
        reply_profiles=[],
        our_reply_changes=[],
        recorded_reply_changes=[],
        first={},
        n_turns=n_turns,
    )
    for dialogue, changes in zip(dialogues, our_changes, strict=True):
        p, m = p_index[dialogue.profile_id], m_index[dialogue.model]
        t.score_sum[p, m] += dialogue.score
        t.score_n[p, m] += 1
        for k, (turn, ours) in enumerate(zip(dialogue.turns, changes, strict=True)):
            t.by_turn[m, k, 2:] += (turn.change, 1)
            t.recorded_sum[m] += turn.change
            t.recorded_n[m] += 1
            if np.isnan(ours):
                continue
            t.ours_sum[p, m] += ours
            t.ours_n[p, m] += 1
            t.by_turn[m, k, :2] += (ours, 1)
            t.reply_profiles.append(p)
            t.our_reply_changes.append(ours)
            t.recorded_reply_changes.append(turn.change)
            if k == 0:
                t.first[(p, m)] = (ours, turn.change)
    return t


def _first_reply_concordance(tally: _Tally, n_profiles: int, n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """Per profile, the concordant weight of its pairs of models' first replies and the number of
    pairs compared (pairs the recording ties are not compared; a tie of ours counts half)."""
    concordant, compared = np.zeros(n_profiles), np.zeros(n_profiles)
    for p in range(n_profiles):
        pairs = [tally.first[(p, m)] for m in range(n_models) if (p, m) in tally.first]
        for a in range(len(pairs)):
            for b in range(a + 1, len(pairs)):
                recorded_diff = pairs[a][1] - pairs[b][1]
                if recorded_diff == 0:
                    continue
                our_diff = pairs[a][0] - pairs[b][0]
                concordant[p] += 0.5 if our_diff == 0 else float(np.sign(our_diff) == np.sign(recorded_diff))
                compared[p] += 1
    return concordant, compared


def _profile_figures(
    tally: _Tally, concordance: tuple[np.ndarray, np.ndarray], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kendall's tau, first-reply concordance and the models' mean changes, for rows of profile
    weights (how often each profile is drawn)."""
    concordant, compared = concordance
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ours = (weights @ tally.ours_sum) / (weights @ tally.ours_n)
        mean_score = (weights @ tally.score_sum) / (weights @ tally.score_n)
        agreement = (weights @ concordant) / (weights @ compared)
    return kendall_tau_b(mean_ours, mean_score), agreement, mean_ours


def _profile_resamples(n_profiles: int, bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`bootstrap` resamples of the profiles: the profiles drawn, and how often each one is drawn."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(n_profiles, size=(bootstrap, n_profiles))
    weights = np.zeros((bootstrap, n_profiles))
    np.add.at(weights, (np.arange(bootstrap)[:, None], draws), 1.0)
    return draws, weights


def _reply_spearman(tally: _Tally, draws: np.ndarray, n_profiles: int) -> tuple[float, np.ndarray]:
    """Spearman's rho of our against the recorded change per judged reply, and its value on each
    resample of the profiles (nan where a resample has fewer than two replies)."""
    reply_profile = np.asarray(tally.reply_profiles, int)
    reply_ours, reply_recorded = np.asarray(tally.our_reply_changes, float), np.asarray(tally.recorded_reply_changes, float)
    rho = spearman(reply_ours, reply_recorded) if reply_ours.size > 1 else float("nan")
    replies_of = [np.flatnonzero(reply_profile == p) for p in range(n_profiles)]
    rho_samples = np.full(len(draws), np.nan)
    for b in range(len(draws)):
        chosen = np.concatenate([replies_of[p] for p in draws[b]]) if n_profiles else np.array([], int)
        if chosen.size > 1:
            rho_samples[b] = spearman(reply_ours[chosen], reply_recorded[chosen])
    return rho, rho_samples


def _model_rows(tally: _Tally, models: Sequence[str], mean_ours: np.ndarray) -> list[ModelRow]:
    """One row per model, the highest SAGE score first."""
    rows = []
    for m, model in enumerate(models):
        with np.errstate(invalid="ignore", divide="ignore"):
            turn_ours = tally.by_turn[m, :, 0] / tally.by_turn[m, :, 1]
            turn_recorded = tally.by_turn[m, :, 2] / tally.by_turn[m, :, 3]
            rows.append(
                ModelRow(
                    model=model,
                    dialogues=int(tally.score_n[:, m].sum()),
                    replies=int(tally.ours_n[:, m].sum()),
                    sage_score=float(tally.score_sum[:, m].sum() / tally.score_n[:, m].sum()),
                    our_change=float(mean_ours[0, m]),
                    recorded_change=float(tally.recorded_sum[m] / tally.recorded_n[m]) if tally.recorded_n[m] else float("nan"),
                    our_by_turn=tuple(float(v) for v in turn_ours[: tally.n_turns]),
                    recorded_by_turn=tuple(float(v) for v in turn_recorded[: tally.n_turns]),
                )
            )
    rows.sort(key=lambda row: -row.sage_score)
    return rows


def summarize(
    dialogues: Sequence[Dialogue],
    our_changes: Sequence[Sequence[float]],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    simulator: str = "",
    emotion: int | str = NEUTRAL_EMOTION,
    errors: int = 0,
) -> Measurement:
    """The figures of `our_changes` (one list per dialogue, one change per judged reply, nan = none)."""
    if len(our_changes) != len(dialogues) or any(len(c) != len(d.turns) for c, d in zip(our_changes, dialogues, strict=True)):
        raise ValueError("our_changes needs one list per dialogue with one change per judged reply")
    if not dialogues:
        raise ValueError("no dialogues to measure")
    models = sorted({d.model for d in dialogues})
    profiles = sorted({d.profile_id for d in dialogues})
    tally = _tally(dialogues, our_changes, profiles, models)
    concordance = _first_reply_concordance(tally, len(profiles), len(models))

    tau, agreement, mean_ours = _profile_figures(tally, concordance, np.ones((1, len(profiles))))
    draws, weights = _profile_resamples(len(profiles), bootstrap, seed)
    tau_samples, agreement_samples, _ = _profile_figures(tally, concordance, weights)
    rho, rho_samples = _reply_spearman(tally, draws, len(profiles))

    return Measurement(
        judge=dialogues[0].judge,
        simulator=simulator,
        emotion=str(emotion),
        profiles=len(profiles),
        dialogues=len(dialogues),
        replies=len(tally.our_reply_changes),
        errors=errors,
        models=tuple(_model_rows(tally, models, mean_ours)),
        kendall_tau=_interval(float(tau[0]), tau_samples),
        first_reply_concordance=_interval(float(agreement[0]), agreement_samples),
        spearman=_interval(rho, rho_samples),
        bootstrap=bootstrap,
    )


def measure(
    dialogues: Sequence[Dialogue] | None = None,
    simulator: str | Simulator = "builtin",
    simulator_kwargs: Mapping[str, Any] | None = None,
    *,
    emotion: int | str = NEUTRAL_EMOTION,
    bootstrap: int = 1000,
    seed: int = 0,
    concurrency: int = 16,
    progress: bool = False,
) -> Measurement:
    """Play SAGE's recorded replies through `simulator` and compare its changes with the recorded ones.

    `dialogues` defaults to the vendored DeepSeek-V3 judge's (the fitting data). `simulator` is a
    name or an instance, built like `gym.make("SageDialogue-v0", simulator=..., simulator_kwargs=...)`.
    `emotion` is the user's emotion before each reply: a number, or "recorded".
    """
    if emotion != RECORDED and (isinstance(emotion, bool) or not isinstance(emotion, int) or not 0 <= emotion <= 100):
        raise ValueError(f"emotion must be an integer in [0, 100] or {RECORDED!r}, got {emotion!r}")
    dialogues = list(load_vendored(judge=FITTING_JUDGE) if dialogues is None else dialogues)
    user = make_simulator(simulator, **dict(simulator_kwargs or {}))
    try:
        changes, errors = predict_changes(dialogues, user, emotion=emotion, concurrency=concurrency, progress=progress)
    finally:
        if user is not simulator and hasattr(user, "aclose"):  # a simulator we built (an LLM client) is ours to close
            run_sync(user.aclose())
    return summarize(dialogues, changes, bootstrap=bootstrap, seed=seed, simulator=user.kind, emotion=emotion, errors=errors)
