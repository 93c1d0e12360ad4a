"""Metrics: accumulate per step, reduce across ranks, write JSONL + TensorBoard, plot the learning curve.

`MetricSums` keeps (sum, count) pairs rather than means, so a torchrun run can all-reduce them
and every mean is over the whole global batch. `MetricsWriter` writes one JSON line per step
(one write per line, so a crash never leaves a torn line a reader cannot skip; a resumed run
first drops the lines of steps after its checkpoint) and TensorBoard scalars.
`plot_learning_curve` draws the mean episode return per step, and the final emotion with the
held-out scores (`eval/score`, `eval/train_score`) where the run has them, to a PNG with
matplotlib's Agg backend, so it works without a display.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class MetricSums:
    """Named (sum, count) pairs and maxima. `means()` divides; `reduce` sums pairs and takes maxima across ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)
        self.maxima: dict[str, float] = {}
        self.once: set[str] = set()  # names counted by `count_once`

    def add(self, name: str, value: float, count: float = 1.0) -> None:
        """Add `value` as the *sum* of `count` observations."""
        self.sums[name] += float(value)
        self.counts[name] += float(count)

    def add_max(self, name: str, value: float) -> None:
        """Keep the largest `value` seen under `name` (on this rank; `reduce` takes the max over ranks)."""
        self.maxima[name] = max(self.maxima.get(name, float("-inf")), float(value))

    def count_once(self, name: str) -> None:
        """Count one observation of a value whose shares (added with count 0) are spread over
        micro-batches and ranks: every rank counts it, and `reduce` counts it once."""
        self.counts[name] += 1.0
        self.once.add(name)

    def reduce(
        self, all_reduce: Callable[[list[float]], list[float]] | None, all_gather: Callable[[Any], list[Any]] | None = None,
        all_max: Callable[[list[float]], list[float]] | None = None, ranks: int = 1,
    ) -> MetricSums:
        """Sum every (sum, count) entry across ranks with `all_reduce` (a function on a flat list) and
        take every maximum with `all_max`; identity when `all_reduce` is None. A count of
        `count_once` is that of one rank (every one of the `ranks` counted the same).

        With `all_gather` the names are first united over ranks: a rank that logged no KL or saw
        no policy token still takes part with zeros (and a maximum with -inf), so the flat lists line up.
        """
        if all_reduce is None:
            return self
        names, peaks = sorted(self.sums), sorted(self.maxima)
        if all_gather is not None:
            united = all_gather((names, peaks))
            names = sorted(set().union(*(n for n, _ in united)))
            peaks = sorted(set().union(*(p for _, p in united)))
        flat = all_reduce([self.sums[n] for n in names] + [self.counts[n] for n in names])
        reduced = MetricSums()
        reduced.once = set(self.once)
        for i, name in enumerate(names):
            reduced.sums[name] = flat[i]
            reduced.counts[name] = flat[len(names) + i] / (ranks if name in self.once else 1)
        local = [self.maxima.get(n, float("-inf")) for n in peaks]
        reduced.maxima = dict(zip(peaks, all_max(local) if all_max is not None else local, strict=True))
        return reduced

    def means(self) -> dict[str, float]:
        """Every mean, and every maximum as it is."""
        out = {n: (self.sums[n] / self.counts[n] if self.counts[n] else float("nan")) for n in self.sums}
        out.update(self.maxima)
        return dict(sorted(out.items()))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """One JSON line per step in `metrics.jsonl`, and TensorBoard scalars under `tensorboard/`."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True, purge_step: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run wrote after the checkpoint we resume from
            self._tb = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=purge_step)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        from sage_gym.transcripts import append_jsonl

        append_jsonl(self.path, {"step": step, **{k: _finite(v) for k, v in metrics.items()}})
        if self._tb is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(name, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The metric records of a run, one per step (the last line written for a step wins; a torn line is skipped)."""
    from sage_gym.transcripts import read_jsonl

    by_step: dict[int, dict[str, Any]] = {}
    for record in read_jsonl(path):
        by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def moving_average(values: Iterable[float], window: int) -> list[float]:
    out, buffer = [], []
    for v in values:
        buffer.append(v)
        if len(buffer) > window:
            buffer.pop(0)
        out.append(sum(buffer) / len(buffer))
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, title: str, png_path: str | Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    _pyplot().close(fig)
    return png_path


def plot_learning_curve(metrics_path: str | Path, png_path: str | Path, title: str = "GRPO on SageDialogue") -> Path:
    """Mean episode return (and its moving average) and final emotion per step, with the held-out
    evaluations (greedy, SAGE settings) on the emotion panel when the run made any, as a PNG."""
    everything = read_metrics(metrics_path)
    records = [r for r in everything if r.get("return") is not None]
    steps = [r["step"] for r in records]
    returns = [r["return"] for r in records]
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(steps, returns, alpha=0.35, label="mean return")
    axes[0].plot(steps, moving_average(returns, 5), label="moving average (5)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("episode return")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    emotions = [r.get("emotion") for r in records]
    axes[1].plot(steps, [e if e is not None else float("nan") for e in emotions], color="tab:green", label="training dialogues")
    evaluated = [r for r in everything if r.get("eval/score") is not None]
    if evaluated:
        # points, not lines: a few evaluations far apart (often only before and after) are no trend
        at = [r["step"] for r in evaluated]
        axes[1].plot(at, [r["eval/score"] for r in evaluated], "o", linestyle="none", color="tab:red", label="held-out users (greedy)")
        if any(r.get("eval/train_score") is not None for r in evaluated):
            axes[1].plot(at, [r.get("eval/train_score", float("nan")) for r in evaluated], "s", linestyle="none", color="tab:purple", label="training users (greedy)")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("final emotion (0-100)")
    axes[1].grid(alpha=0.3)
    return _save(fig, title, png_path)


def plot_critic_curve(metrics_path: str | Path, png_path: str | Path, title: str = "PPO critic") -> Path:
    """Value loss and explained variance per step, as a PNG."""
    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 3.8))
    for ax, name, label in ((axes[0], "value_loss", "value loss"), (axes[1], "explained_variance", "explained variance")):
        ax.plot(steps, [r.get(name) if r.get(name) is not None else float("nan") for r in records])
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return _save(fig, title, png_path)
