"""Checkpoints written atomically, and resumed exactly.

A checkpoint is a folder `checkpoints/step-000010/` holding:

| file | content |
|---|---|
| `policy/` | the model weights, or only the LoRA adapter, and the tokenizer (`Policy.save`) |
| `trainer.pt` | optimizer state (whole, keyed by parameter name) and LR-scheduler state, the step, the RNG states (Python, NumPy, torch CPU and CUDA), and any extra state of the learner (a critic's, for PPO) |
| `config.json` | the run's configuration, for the record |

It is written to a temporary folder next to its final place and renamed into place, so a crash
while saving never leaves a half-written checkpoint where `--resume` would find it; the file
`checkpoints/latest` (replaced atomically too) names the newest. Only rank 0 writes; weights
and optimizer states are whole (unsharded), so a checkpoint resumes on any number of ranks with
either wrapper (`agents.learn.distributed`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy.run_folder import (  # re-exported: where checkpoints were found before
    CHECKPOINTS,
    LATEST,
    find_checkpoint as find_checkpoint,
)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"step-{step:06d}"


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    policy: Any,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint of `step` atomically; keep the newest `keep` checkpoints.

    `trainer_state`: optimizer and scheduler states and the learner's own state (saved with
    the step and the RNG states in `trainer.pt`); `weights`: the policy's whole weights when
    its live ones are sharded.
    """
    final = checkpoint_dir(output_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    policy.save(tmp / "policy", state_dict=weights)
    torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "trainer.pt")
    (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
    if final.exists():  # the same step saved again (a resumed run): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_latest(final.parent, final.name)
    _prune(final.parent, keep)
    return final


def _write_latest(folder: Path, name: str) -> None:
    tmp = folder / f".{LATEST}.tmp-{os.getpid()}"
    tmp.write_text(name + "\n")
    os.replace(tmp, folder / LATEST)


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(path: str | Path, restore_rng: bool = True) -> dict[str, Any]:
    """The `trainer.pt` of a checkpoint (step, optimizer, scheduler, a learner's own state), restoring the RNG states.

    The policy's weights are loaded separately (`Policy.load_weights(path / "policy")`), before
    the model is wrapped for torchrun; the optimizer state after the optimizer is built.
    """
    state = torch.load(Path(path) / "trainer.pt", map_location="cpu", weights_only=False)
    if restore_rng:
        set_rng_state(state["rng"])
    return state
