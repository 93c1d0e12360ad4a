"""Run a trainer as one process or as one rank of a `torchrun` job: the body both train commands share."""

from __future__ import annotations

from pathlib import Path

from agents.learn.components import check_model_paths
from agents.learn.config import TrainConfig
from agents.learn.distributed import Distributed, init_distributed, shutdown_distributed
from agents.learn.held_out_users import CompareReports, PlayPolicy
from agents.learn.trainer import Algorithm, Trainer


def launch(
    cfg: TrainConfig, algorithm: type[Algorithm], prog: str = "python -m agents.train_grpo",
    play_held_out: PlayPolicy | None = None, compare_held_out: CompareReports | None = None,
) -> tuple[list[dict[str, float]], Distributed]:
    """Join the torchrun job if there is one, train, and leave it; returns (history, this rank's place).
    `play_held_out` plays the held-out check and `compare_held_out` pairs it with the untrained
    policy's (the commands pass the evaluator's `play_policy` and `paired_gain`).

    At the end the main rank prints where the run is and the commands that evaluate and continue it."""
    check_model_paths(cfg)  # before transformers is imported: a missing path is one line at once
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one to watch
    dist = init_distributed(cfg.model.device)
    try:
        trainer = Trainer(cfg, algorithm, dist=dist, play_held_out=play_held_out, compare_held_out=compare_held_out)
        try:
            history = trainer.fit()
        finally:
            trainer.close()
        if dist.is_main:
            print(next_commands(trainer.output_dir, prog))
    finally:
        shutdown_distributed()
    return history, dist


def next_commands(run: Path, prog: str) -> str:
    """Where a run is, and how to evaluate and continue it (`--model` and `--output-dir` take the run folder itself)."""
    return (
        f"run folder: {run}\n"
        f"  evaluate it:  python -m agents.evaluate --agent hf --model {run}\n"
        f"  continue it:  {prog} --output-dir {run} --resume auto --steps N"
    )


def mean_of(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def first_and_last(history: list[dict[str, float]]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """The first and the last fifth of a run's steps (at least one each), for the closing summary."""
    fifth = max(1, len(history) // 5)
    return history[:fifth], history[-fifth:]
