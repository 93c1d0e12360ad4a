"""Run folders: every training run writes to a folder of its own, so runs never mix.

Without `--output-dir`, a run gets a new folder `runs/<algorithm>/<YYYYmmdd-HHMMSS>/` (`runs/grpo/`,
`runs/ppo/`), and `runs/<algorithm>/latest` points at it: a symbolic link, or a text file naming
the folder where links cannot be made (CleanRL names its runs the same way). Whatever takes a run
folder (`--resume auto`, `python -m agents.evaluate --agent hf --model`) also takes such a parent
and follows its `latest`.

An `--output-dir` that already holds a run (or a parent of runs) is refused, unless `--resume`
continues that run or `--overwrite` clears the folder first: a second run never appends to
another's metrics or transcripts, nor prunes its checkpoints. `--resume auto` refuses a
configuration that differs from the run's in anything but `RESUME_MAY_CHANGE`.

Nothing here imports torch: the evaluator reads run folders (and finds their latest checkpoint) too.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.cli import UsageError

RUNS_ROOT = Path("runs")
LATEST = "latest"
CHECKPOINTS = "checkpoints"  # a run's checkpoints/step-NNNNNN/ folders, and checkpoints/latest naming the newest
CONFIG = "config.json"
# what a run writes at its top level (a `latest` marks a parent of runs): any of them means the folder is taken
RUN_ENTRIES = (CONFIG, "metrics.jsonl", "transcripts.jsonl", "checkpoints", "held_out", "tensorboard", LATEST)
# options that change how a run computes or what it keeps, not what it learns: a resume may change them
RESUME_MAY_CHANGE = frozenset({
    "resume", "overwrite", "output_dir", "steps", "device", "parallel", "rollout_engine", "vllm_gpu_memory_utilization", "threads",
    "max_concurrency", "micro_batch_tokens", "gradient_checkpointing", "progress", "tensorboard", "save_every", "keep_checkpoints",
    "eval_every", "max_dropped_share",
})  # fmt: skip


def default_root(algorithm: str) -> Path:
    """Where runs of `algorithm` go without `--output-dir`: `runs/grpo`, `runs/ppo`."""
    return RUNS_ROOT / algorithm


def follow_latest(path: str | Path) -> Path:
    """The run a folder stands for: the one its `latest` names when it is a parent of runs, else itself."""
    path = Path(path)
    latest = path / LATEST
    if latest.is_symlink():
        return path / os.readlink(latest)
    if latest.is_file():
        return path / latest.read_text().strip()
    return path


def holds_run(path: str | Path) -> bool:
    """Whether `path` is a folder holding a run (or runs) already."""
    path = Path(path)
    return path.is_dir() and any((path / entry).exists() or (path / entry).is_symlink() for entry in RUN_ENTRIES)


def point_latest(root: Path, name: str) -> None:
    """Make `root/latest` name the run folder `root/name`, atomically (a link, else a text file)."""
    tmp = root / f".{LATEST}.tmp-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name, target_is_directory=True)
    except OSError:  # a file system or platform without symbolic links
        tmp.write_text(name + "\n")
    os.replace(tmp, root / LATEST)


def new_run_folder(root: str | Path) -> Path:
    """Create `root/<YYYYmmdd-HHMMSS>` (with `-1`, `-2`, ... when that second is taken) and point `root/latest` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count():
        name = stamp if n == 0 else f"{stamp}-{n}"
        try:
            (root / name).mkdir()
        except FileExistsError:
            continue
        point_latest(root, name)
        return root / name
    raise AssertionError("unreachable")


def planned_folder(output_dir: str | None, algorithm: str, resume: str | None, overwrite: bool) -> Path | None:
    """The existing folder a run will write to, after checking it may; None: a new run folder under `default_root(algorithm)`.

    Refuses (`UsageError`, one line) an explicit folder that holds a run without `--resume` or
    `--overwrite`, and `--resume` together with `--overwrite`.
    """
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite deletes it: choose one")
    if resume == "auto":
        folder = follow_latest(output_dir if output_dir is not None else default_root(algorithm))
        if not folder.is_dir():
            raise UsageError(f"--resume auto: no run in {output_dir or default_root(algorithm)} to continue")
        return folder
    if output_dir is None:
        return None  # a named checkpoint (--resume FOLDER) without --output-dir: continued in a new run folder
    folder = Path(output_dir)
    if resume:
        return follow_latest(folder)  # continuing a named checkpoint in this folder: its later records are dropped
    if overwrite and ((folder / LATEST).exists() or (folder / LATEST).is_symlink()):
        raise UsageError(f"{folder} holds several runs (it has a {LATEST}): --overwrite clears one run's folder; name it, e.g. --output-dir {follow_latest(folder)}")
    if holds_run(folder) and not overwrite:
        raise UsageError(
            f"{folder} already holds a run: continue it with --resume auto, start it afresh with --overwrite (deletes it), "
            "or choose another --output-dir (without one, every run gets its own folder)"
        )
    return folder


def clear_folder(folder: Path) -> None:
    """Delete everything in `folder` (`--overwrite`), keeping the folder itself."""
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def options_by_name(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's options by name, from its grouped configuration (`{"optimizer": {"lr": ...}}`) or a flat
    one (`{"lr": ...}`, as `config.json` was written before the options were grouped). No option
    takes a mapping, so a mapping is a group."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            options.update(value)
        else:
            options[key] = value
    return options


def check_same_config(folder: Path, config: Mapping[str, Any]) -> None:
    """`--resume auto`: refuse (one line naming the fields) a configuration that differs from the run's recorded one."""
    path = folder / CONFIG
    if not path.is_file():
        return  # a run from before config.json was written: nothing to compare with
    recorded, config = options_by_name(json.loads(path.read_text())), options_by_name(config)
    differing = sorted(
        name for name in recorded.keys() & config.keys() if name not in RESUME_MAY_CHANGE and recorded[name] != config[name]
    )
    if differing:
        shown = ", ".join(f"{name} ({recorded[name]!r} in the run, {config[name]!r} now)" for name in differing[:4])
        more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
        raise UsageError(f"--resume auto: the configuration differs from the run's in {shown}{more}; resume with the run's options, or start a new run")


def find_checkpoint(output_dir: str | Path, resume: str) -> Path:
    """The checkpoint to resume from: `resume` is 'auto' (the latest in output_dir) or a folder."""
    if resume != "auto":
        path = Path(resume)
        if not (path / "trainer.pt").is_file():
            raise FileNotFoundError(f"{path} is not a checkpoint folder (no trainer.pt)")
        return path
    folder = Path(output_dir) / CHECKPOINTS
    latest = folder / LATEST
    if latest.is_file():
        path = folder / latest.read_text().strip()
        if (path / "trainer.pt").is_file():
            return path
    candidates = sorted(p for p in folder.glob("step-*") if (p / "trainer.pt").is_file())
    if not candidates:
        raise FileNotFoundError(f"--resume auto: no checkpoint in {folder}")
    return candidates[-1]
