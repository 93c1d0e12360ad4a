"""Held-out evaluation during training: the current policy, greedy, on users it never trained on.

A policy can learn what its simulator likes about the training users rather than how to help
people, and the training return cannot tell the two apart. So a run evaluates its policy with
the evaluator of `python -m agents.evaluate` (SAGE's settings: initial emotion 40, 10 agent
turns, changes clipped to [-10, 10]; greedy decoding) on two slices of the same size:

- the first `--eval-limit` scenarios of `--eval-scenarios` (default: the eval split), which the
  policy never sees in training: `eval/score`;
- the first as many scenarios of the training set: `eval/train_score`;

and logs `eval/gap` = `eval/train_score` - `eval/score`: how much of what was learned does not
carry to unseen users. From the second check on, `eval/gain` is the policy's unseen-user score
minus the untrained policy's (step 0), paired by user, with its bootstrap interval
(`eval/gain_low`, `eval/gain_high`): the closing summary says whether the run beat its starting
point beyond the noise. Both slices are scored the same way, so the gap measures the users, not
the settings (the training return is played at training temperature and `--max-turns`).

It runs before the first step (the untrained policy: step 0 in metrics.jsonl), every
`--eval-every` steps, and after the last step; each evaluation is a full report in
`<output-dir>/held_out/step-N/{eval,train}/` (report.json, summary.md, transcripts.jsonl).

The learner does not import the evaluator: the training commands hand the trainer a `PlayPolicy`
(`agents.eval.live_policy.play_policy`), which plays one slice and returns its report; this
module decides what is played and what of the reports is logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.learn.rollout import SimulatorFailed, one_line
from agents.policy.model import Policy

HELD_OUT_DIR = "held_out"


@dataclass(frozen=True)
class HeldOutSettings:
    """What a held-out evaluation plays (see the module docstring)."""

    scenarios: str  # the held-out set: a split name or a JSONL file
    limit: int  # its first `limit` scenarios
    train_scenarios: str  # the training set
    train_limit: int  # its first `train_limit` scenarios (the same number, or all the run trains on)
    max_new_tokens: int
    simulator: str = "builtin"
    simulator_kwargs: Mapping[str, Any] | None = None
    seed: int = 0


class PlayPolicy(Protocol):
    """Plays the live policy, greedy, on the first `limit` scenarios of `scenarios` into `folder`
    (written afresh), and returns the evaluation's report (`agents.eval.live_policy.play_policy`)."""

    def __call__(
        self, policy: Policy, folder: Path, *, scenarios: str, limit: int, max_new_tokens: int, step: int,
        simulator: str, simulator_kwargs: dict[str, Any], seed: int,
    ) -> Mapping[str, Any]: ...


class CompareReports(Protocol):
    """The paired difference of two evaluation reports, `trained` - `untrained`, over the users
    both played: {"difference", "ci", "scenarios", "beyond_noise"}, or None when they cannot be
    compared (`agents.eval.live_policy.paired_gain`)."""

    def __call__(self, trained: Mapping[str, Any], untrained: Mapping[str, Any]) -> Mapping[str, Any] | None: ...


def evaluate_policy(
    policy: Policy, settings: HeldOutSettings, step: int, output_dir: str | Path, play: PlayPolicy, compare: CompareReports | None = None,
) -> dict[str, float]:
    """Evaluate `policy` as it is now on both slices with `play`; returns the `eval/*` metrics of `step`,
    with `eval/gain*` against the untrained policy's report (step 0) when `compare` is given.

    Each slice is an ordinary evaluation folder under `<output_dir>/held_out/step-N/`, written
    afresh (a resumed run that evaluates the same step again replaces it).
    """
    root = Path(output_dir) / HELD_OUT_DIR
    folder = root / f"step-{step}"
    scores: dict[str, Mapping[str, Any]] = {}
    for name, scenarios, limit in (("eval", settings.scenarios, settings.limit), ("train", settings.train_scenarios, settings.train_limit)):
        scores[name] = report = play(
            policy, folder / name, scenarios=scenarios, limit=limit, max_new_tokens=settings.max_new_tokens, step=step,
            simulator=settings.simulator, simulator_kwargs=dict(settings.simulator_kwargs or {}), seed=settings.seed,
        )
        if report["errors"] and not report["results"]["n"]:  # no score to log, and the training steps would fail alike
            raise SimulatorFailed(
                f"held-out check at step {step}: the simulator failed all {len(report['errors'])} dialogues; the first error: {one_line(report['errors'][0]['error'])}"
            )
    metrics = held_out_metrics(scores["eval"], scores["train"])
    untrained = root / "step-0" / "eval" / "report.json"  # on disk, so that a resumed run still has it
    if compare is not None and step > 0 and untrained.is_file():
        gain = compare(scores["eval"], json.loads(untrained.read_text()))
        if gain is not None:
            metrics["eval/gain"] = float(gain["difference"])
            metrics["eval/gain_low"], metrics["eval/gain_high"] = (float(x) for x in gain["ci"])
    return metrics


def held_out_metrics(held_out: Mapping[str, Any], train: Mapping[str, Any]) -> dict[str, float]:
    """`eval/score`, `eval/train_score`, `eval/gap` and a few more numbers from the two slices' reports."""
    out: dict[str, float] = {}
    for prefix, report in (("eval/", held_out), ("eval/train_", train)):
        results = report["results"]
        out[f"{prefix}score"] = _mean(results["score"])
        out[f"{prefix}success_rate"] = _mean(results["success_share"])
        out[f"{prefix}failure_rate"] = _mean(results["failure_share"])
        out[f"{prefix}dialogues"] = float(results["n"])
    canaries = held_out.get("canaries") or {}
    if "repeated_ngram_rate" in canaries:
        out["eval/repetition_rate"] = float(canaries["repeated_ngram_rate"])
    out["eval/gap"] = out["eval/train_score"] - out["eval/score"]
    return out


def _mean(stat: Mapping[str, Any]) -> float:
    value = stat.get("mean")
    return float("nan") if value is None else float(value)


def held_out_line(before: Mapping[str, Any] | None, after: Mapping[str, Any], settings: HeldOutSettings) -> str:
    """The closing summary: untrained and trained scores on held-out and training users."""

    def pair(key: str) -> str:
        now = f"{after[key]:.1f}"
        return f"{before[key]:.1f} -> {now}" if before and before.get(key) is not None else now

    line = (
        f"held-out check (greedy, SAGE settings: emotion 40, 10 turns): "
        f"{settings.limit} unseen users ({settings.scenarios}) untrained -> trained {pair('eval/score')}; "
        f"{settings.train_limit} training users {pair('eval/train_score')}; gap (training - unseen) {pair('eval/gap')}"
    )
    if after.get("eval/gain") is not None:
        low, high = after["eval/gain_low"], after["eval/gain_high"]
        if low > 0 or high < 0:
            verdict = ("better" if low > 0 else "worse") + " beyond the noise"
        else:
            verdict = "a tie: within the noise"
        line += f"\ntrained - untrained on the unseen users, paired by user: {after['eval/gain']:+.1f} [{low:+.1f}, {high:+.1f}] ({verdict})"
    return line
