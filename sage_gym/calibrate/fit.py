"""Fit the calibrated built-in user on SAGE's DeepSeek-V3 judge (`python -m sage_gym.calibrate fit`).

Two fits, both ridge regressions of the recorded emotion change of a reply, with the user's
emotion before the reply as a covariate (SAGE's changes carry momentum):

1. **The reply's value** (`sage_gym.simulators.reply_value`): on the reply's multilingual sentence
   embedding and its cosine with the user's last message. Each reply's value that the second fit sees comes from a model fitted without
   the reply's own frontier model (leave one model out), so the second fit weighs the value as it
   will behave on replies it has never seen.
2. **The parts' weights** (`sage_gym.simulators.calibrated`): on the rule-based analysis' parts
   (strategy sums per intention, questions, engagement, length bins, whole-message flags) and the
   reply's value, over the replies that raise no guard flag.

`leave_one_model_out` repeats the whole fit without each model in turn and predicts that model's
replies, the honest figure for how the user ranks a model it has not seen.

This module reads the fitting judge only: `load_vendored()` without a judge, or a folder checked to
be that judge's. The held-out judge is for `measure`, never for this module (a test checks it).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sage_gym.calibrate.data import FITTING_JUDGE, Dialogue, Turn
from sage_gym.simulators import builtin, calibrated
from sage_gym.simulators.reply_value import MODEL_FILE, MOMENTUM_SCALE, NEUTRAL_EMOTION, ReplyValueModel, reply_features

VALUE_RIDGE = 1.0  # chosen by leave-one-model-out Kendall tau on the fitting judge (docs/calibration.md)
PARTS_RIDGE = 1.0
NOISE_STD = 1.0  # emotion points: small seeded noise, so that equal replies need not get equal changes


@dataclass(frozen=True)
class Example:
    """One judged reply with what both fits need."""

    model: str
    turn: Turn
    parts: dict[str, float]  # without the reply's value (filled per fit)
    flags: frozenset[str]


def check_fitting_judge(dialogues: Sequence[Dialogue]) -> None:
    judges = sorted({d.judge for d in dialogues})
    if judges != [FITTING_JUDGE]:
        raise ValueError(f"the calibrated user is fitted on the {FITTING_JUDGE} judge's dialogues only, got {judges}")


def examples(dialogues: Sequence[Dialogue]) -> list[Example]:
    """Every answered reply with its rule-based parts (the slow step: the whole analysis per reply)."""
    check_fitting_judge(dialogues)
    out = []
    for dialogue in dialogues:
        for turn in dialogue.turns:
            parts, flags = builtin.calibrated_parts(dialogue.scenario, turn.history, turn.reply, reply_value=0.0)
            out.append(Example(dialogue.model, turn, parts, flags))
    return out


def _with_covariates(x: np.ndarray, before: np.ndarray) -> np.ndarray:
    return np.hstack([x, ((before - NEUTRAL_EMOTION) / MOMENTUM_SCALE)[:, None], np.ones((len(x), 1))])


def _ridge(gram: np.ndarray, moment: np.ndarray, penalty: float) -> np.ndarray:
    """Solve (X'X + penalty I) w = X'y, the last two columns (momentum, intercept) unpenalised."""
    reg = penalty * np.eye(len(gram))
    reg[-2:, -2:] = 0.0
    return np.linalg.solve(gram + reg, moment)


class _ValueFits:
    """Ridge fits of the reply's value that share one Gram matrix: leaving a model out subtracts
    its rows' share instead of rebuilding the matrix."""

    def __init__(self, items: Sequence[Example]) -> None:
        said = [_said(e.turn) for e in items]
        before = np.array([e.turn.emotion_before for e in items], dtype=float)
        self.x = _with_covariates(reply_features([e.turn.reply for e in items], said), before)
        self.y = np.array([e.turn.change for e in items], dtype=float)
        self.models = np.array([e.model for e in items])
        self.gram = self.x.T @ self.x
        self.moment = self.x.T @ self.y

    def coefficients(self, without: str | None = None) -> np.ndarray:
        gram, moment = self.gram, self.moment
        if without is not None:
            rows = self.x[self.models == without]
            gram, moment = gram - rows.T @ rows, moment - rows.T @ self.y[self.models == without]
        return _ridge(gram, moment, VALUE_RIDGE)

    def values(self, coef: np.ndarray, rows: np.ndarray) -> np.ndarray:
        reply_part = self.x[:, :-2] @ coef[:-2]
        return reply_part[rows] - reply_part.mean()

    def model(self, coef: np.ndarray, source: str) -> ReplyValueModel:
        reply_part = self.x[:, :-2] @ coef[:-2]
        return ReplyValueModel(weight=coef[:-3].copy(), topical_weight=float(coef[-3]), mean_value=float(reply_part.mean()), source=source)


def _said(turn: Turn) -> str:
    """What the user said last before the reply."""
    return next((m["content"] for m in reversed(turn.history) if m["role"] == "user"), "")


def out_of_model_values(fits: _ValueFits) -> np.ndarray:
    """Each reply's reply value from a fit that never saw the reply's model."""
    values = np.zeros(len(fits.y))
    for model in sorted(set(fits.models)):
        rows = fits.models == model
        values[rows] = fits.values(fits.coefficients(without=model), rows)
    return values


def fit_weights(items: Sequence[Example], values: np.ndarray, source: str) -> calibrated.Weights:
    """The parts' weights, over the replies that raise no guard flag (guards keep the rules' costs).

    No momentum covariate here: the change a part earns includes the warmth it brings about, which
    is what a learner's reply earns at any emotion (with it, the fit credits the emotion instead of
    the replies that raised it, and ranked SAGE's models worse: docs/calibration.md)."""
    clean = [i for i, e in enumerate(items) if not e.flags & set(calibrated.GUARD_FLAGS)]
    rows = [calibrated.design_row({**items[i].parts, "reply_value": float(values[i])}) for i in clean]
    x = np.hstack([np.array(rows), np.ones((len(clean), 1))])
    y = np.array([items[i].turn.change for i in clean], dtype=float)
    names = calibrated.PARTS
    coef = _signed_ridge(x, y, [calibrated.SIGNS.get(n, 0) for n in names] + [0])
    return calibrated.Weights(dict(zip(names, coef[: len(names)].tolist(), strict=True)), float(coef[-1]), NOISE_STD, source)


def _signed_ridge(x: np.ndarray, y: np.ndarray, signs: Sequence[int]) -> np.ndarray:
    """Ridge with sign constraints (+1: >= 0, -1: <= 0, 0: free), by an active set: a weight that
    comes out with the wrong sign is held at 0 and the rest refitted. The parts whose direction is
    known (meeting the intention helps, ignoring the user does not) keep it where SAGE's replies
    are too few or too alike to show it; the intercept (last column) is not penalised."""
    free = np.ones(x.shape[1], dtype=bool)
    while True:
        reg = PARTS_RIDGE * np.eye(int(free.sum()))
        reg[-1, -1] = 0.0
        sub = x[:, free]
        coef = np.zeros(x.shape[1])
        coef[free] = np.linalg.solve(sub.T @ sub + reg, sub.T @ y)
        wrong = np.array([s * c < 0 for s, c in zip(signs, coef, strict=True)])
        if not wrong.any():
            return coef
        free &= ~wrong


def _source(items: Sequence[Example], what: str) -> str:
    models = sorted({e.model for e in items})
    return f"SAGE {FITTING_JUDGE} judge: {len(models)} models, {len(items)} replies ({what})"


@dataclass(frozen=True)
class Fitted:
    reply_value: ReplyValueModel
    weights: calibrated.Weights


def fit(items: Sequence[Example]) -> Fitted:
    """Both fits on all the given examples (the shipped user)."""
    fits = _ValueFits(items)
    weights = fit_weights(items, out_of_model_values(fits), _source(items, "parts: reply values from leave-one-model-out fits"))
    return Fitted(fits.model(fits.coefficients(), _source(items, "ridge on the multilingual sentence embedding of the reply and its cosine with the user's last message")), weights)


def predicted_change(example: Example, reply_value: float, weights: calibrated.Weights) -> float:
    """The calibrated user's expected change for an example, as `builtin.assess` computes it before
    its seeded noise and rounding (which average out over many replies)."""
    parts = {**example.parts, "reply_value": reply_value}
    return max(-10.0, min(10.0, calibrated.expected_change(parts, example.flags, weights, builtin.FLAG_PENALTY, builtin.EXTRA_FLAG_PENALTY)))


def leave_one_model_out(items: Sequence[Example]) -> list[float]:
    """Each reply's expected change (neutral emotion) from a user fitted without its model.

    The reply values the held-out model's parts fit sees come from fits without their own model,
    which did see the held-out one (noted in docs/calibration.md)."""
    fits = _ValueFits(items)
    cross = out_of_model_values(fits)
    changes = [0.0] * len(items)
    for model in sorted(set(fits.models)):
        held = fits.models == model
        kept = [e for e, h in zip(items, held, strict=True) if not h]
        weights = fit_weights(kept, cross[~held], "leave one model out")
        own = fits.values(fits.coefficients(without=model), held)
        for i, value in zip(np.flatnonzero(held), own, strict=True):
            changes[i] = predicted_change(items[int(i)], float(value), weights)
    return changes


def write(fitted: Fitted, folder: Path) -> list[Path]:
    """The shipped files: the reply's value model and the parts' weights, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    value_path = folder / MODEL_FILE
    weights_path = folder / calibrated.WEIGHTS_FILE
    value_path.write_bytes(gzip.compress(json.dumps(fitted.reply_value.to_json(), ensure_ascii=False).encode("utf-8"), mtime=0))
    weights_path.write_text(json.dumps(fitted.weights.to_json(), indent=2) + "\n", encoding="utf-8")
    return [value_path, weights_path]
