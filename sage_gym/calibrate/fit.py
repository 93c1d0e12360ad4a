"""Fit the calibrated built-in user on SAGE's DeepSeek-V3 judge (`python -m sage_gym.calibrate fit`).

Two fits of the recorded emotion change of a reply:

1. **The reply's value** (`sage_gym.simulators.reply_value`): the mean recorded change of the
   reply's nearest judged replies in the multilingual sentence embedding, plus a topical slope; the
   slopes of momentum (the user's emotion before the reply) and topicality come from a least-squares
   fit. Each reply's value that the second fit sees comes from other models' replies only, so the
   second fit weighs the value as it will behave on replies it has never seen.
2. **The scale** (`sage_gym.simulators.calibrated`): a sign-constrained least squares of each
   model's mean change on its replies' mean value, over the replies that raise no guard flag.

`leave_one_model_out` repeats the whole fit without each model in turn and predicts that model's
replies, the honest figure for how the user ranks a model it has not seen.

This module reads the fitting judge only: `load_vendored()` without a judge, or a folder checked to
be that judge's. The held-out judge is for `measure`, never for this module (a test checks it).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sage_gym.calibrate.data import FITTING_JUDGE, Dialogue, Turn
from sage_gym.simulators import builtin, calibrated
from sage_gym.simulators.reply_value import MODEL_FILE, MOMENTUM_SCALE, NEUTRAL_EMOTION, Bank, ReplyValueModel, build_bank

# Neighbours averaged, chosen by how the held-out values alone rank the fitting judge's models when
# each model is left out: 10 -> tau 0.600, 30 -> 0.778, 100 -> 0.689 (docs/calibration.md).
VALUE_NEIGHBOURS = 30
VALUE_CHUNK = 512  # replies valued at once (a chunk x bank similarity matrix)
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


def _constants(bank: Bank) -> tuple[float, float]:
    """The momentum and topical slopes: least squares of the recorded change on (emotion - 40) / 20,
    the reply's cosine with the user's last message and a constant."""
    x = np.stack([(bank.before - NEUTRAL_EMOTION) / MOMENTUM_SCALE, bank.topical, np.ones(len(bank.changes))], axis=1)
    coef = np.linalg.lstsq(x, bank.changes, rcond=None)[0]
    return float(coef[0]), float(coef[1])


def _values(model: ReplyValueModel, queries: Bank, bank: Bank) -> np.ndarray:
    """Values of the `queries` replies from the `bank`, each reply's neighbours never of its own model, in chunks."""
    out = np.zeros(len(queries.changes))
    for start in range(0, len(out), VALUE_CHUNK):
        part = slice(start, start + VALUE_CHUNK)
        out[part] = model.values_of(queries.vectors[part], queries.said[part], queries.turns[part], bank, [str(m) for m in queries.models[part]])
    return out


def _rows(bank: Bank, keep: np.ndarray) -> Bank:
    return Bank(bank.vectors[keep], bank.said[keep], bank.changes[keep], bank.before[keep], bank.models[keep], bank.turns[keep])


class _ValueFits:
    """The nearest-neighbour value over the fitting replies, refitted without one model at will."""

    def __init__(self, items: Sequence[Example]) -> None:
        self.bank = build_bank([(e.model, e.turn) for e in items])
        self.models = self.bank.models

    def model(self, source: str, without: str | None = None) -> ReplyValueModel:
        """The value's constants fitted on every model's replies but `without`'s, its bank those
        replies; `mean_value` is their mean value, each valued from other models' replies."""
        bank = _rows(self.bank, self.models != without)
        momentum, topical = _constants(bank)
        uncentred = ReplyValueModel(VALUE_NEIGHBOURS, momentum, topical, 0.0, source)
        return dataclasses.replace(uncentred, mean_value=float(_values(uncentred, bank, bank).mean()))

    def values(self, model: ReplyValueModel, rows: np.ndarray, without: str | None = None) -> np.ndarray:
        """Values of the fitting replies in `rows` (a mask), from the bank less `without`'s replies,
        each reply's neighbours never of its own model."""
        return _values(model, _rows(self.bank, rows), _rows(self.bank, self.models != without))


def fit_weights(items: Sequence[Example], values: np.ndarray, source: str) -> calibrated.Weights:
    """The parts' weights: a least squares of each model's mean recorded change on the mean of its
    replies' parts, over the replies that raise no guard flag (guards keep the rules' costs).

    Fitted across models, not across replies: SAGE's score is a model's changes added up, and a
    reply-level fit is diluted by the judge's noise (the reply-level slope of the value is 1.3, the
    model-level one about 4). Diluted, the user compresses the gap between models, so the intercept,
    the training models' mean change, decides the held-out model's sign: it ranked SAGE's models at
    tau 0.556 held out by model, against 0.778 fitted across models (docs/calibration.md). No
    momentum covariate: the change a part earns includes the warmth it brings about, which is what
    a learner's reply earns at any emotion."""
    clean = [i for i, e in enumerate(items) if not e.flags & set(calibrated.GUARD_FLAGS)]
    rows = np.array([calibrated.design_row({**items[i].parts, "reply_value": float(values[i])}) for i in clean]).reshape(len(clean), -1)
    changes = np.array([items[i].turn.change for i in clean], dtype=float)
    owners = np.array([items[i].model for i in clean])
    models = sorted(set(owners))
    x = np.array([np.append(rows[owners == m].mean(axis=0), 1.0) for m in models])
    y = np.array([changes[owners == m].mean() for m in models])
    names = calibrated.PARTS
    coef = _signed_least_squares(x, y, [calibrated.SIGNS.get(n, 0) for n in names] + [0])
    return calibrated.Weights(dict(zip(names, coef[: len(names)].tolist(), strict=True)), float(coef[-1]), NOISE_STD, source)


def _signed_least_squares(x: np.ndarray, y: np.ndarray, signs: Sequence[int]) -> np.ndarray:
    """Least squares with sign constraints (+1: >= 0, -1: <= 0, 0: free), by an active set: a
    weight that comes out with the wrong sign is held at 0 and the rest refitted, so a part whose
    direction is known (meeting the intention helps) keeps it where SAGE's models are too few or
    too alike to show it."""
    free = np.ones(x.shape[1], dtype=bool)
    while True:
        coef = np.zeros(x.shape[1])
        coef[free] = np.linalg.lstsq(x[:, free], y, rcond=None)[0]
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
    value = fits.model(_source(items, f"the mean recorded change of a reply's {VALUE_NEIGHBOURS} nearest judged replies in the multilingual sentence embedding, plus a topical slope"))
    every = np.ones(len(items), dtype=bool)
    weights = fit_weights(items, fits.values(value, every), _source(items, "parts: each reply valued from other models' replies"))
    return Fitted(value, weights)


def predicted_change(example: Example, reply_value: float, weights: calibrated.Weights) -> float:
    """The calibrated user's expected change for an example, as `builtin.assess` computes it before
    its seeded noise and rounding (which average out over many replies)."""
    parts = {**example.parts, "reply_value": reply_value}
    return max(-10.0, min(10.0, calibrated.expected_change(parts, example.flags, weights, builtin.FLAG_PENALTY, builtin.EXTRA_FLAG_PENALTY)))


def leave_one_model_out(items: Sequence[Example]) -> list[float]:
    """Each reply's expected change (neutral emotion) from a user fitted without its model: the
    value's constants, its bank and the scale all fitted on the other models' replies."""
    fits = _ValueFits(items)
    changes = [0.0] * len(items)
    for model in sorted(set(fits.models)):
        held = fits.models == model
        value = fits.model("leave one model out", without=model)
        kept = [e for e, h in zip(items, held, strict=True) if not h]
        weights = fit_weights(kept, fits.values(value, ~held, without=model), "leave one model out")
        own = fits.values(value, held, without=model)
        for i, own_value in zip(np.flatnonzero(held), own, strict=True):
            changes[i] = predicted_change(items[int(i)], float(own_value), weights)
    return changes


def write(fitted: Fitted, folder: Path) -> list[Path]:
    """The shipped files: the reply's value model and the parts' weights, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    value_path = folder / MODEL_FILE
    weights_path = folder / calibrated.WEIGHTS_FILE
    value_path.write_bytes(gzip.compress(json.dumps(fitted.reply_value.to_json(), ensure_ascii=False).encode("utf-8"), mtime=0))
    weights_path.write_text(json.dumps(fitted.weights.to_json(), indent=2) + "\n", encoding="utf-8")
    return [value_path, weights_path]
