"""Is a `--model` value a local path or a hub id? A missing local path is refused at once.

Nothing here imports torch or transformers, so the commands check a model path before their
heavy imports, and a missing one is one line in well under a second of work.
"""

from __future__ import annotations

from pathlib import Path

from agents.cli import MissingPathError


def is_local_path(name: str) -> bool:
    """Whether a `--model` value names a local path rather than a hub id ("org/name").

    It does when it starts with `/`, `./`, `../` or `~`, has more parts than a hub id, lives under
    `runs/` (where the trainers write), or its first part exists here (`my_models/x` with a
    `my_models/` folder). A missing local path is then one line at once, never a hub lookup with
    its retries."""
    path = Path(name)
    if name.startswith(("/", "./", "../", "~", ".\\")) or path.is_absolute() or len(path.parts) > 2:
        return True
    return len(path.parts) == 2 and (path.parts[0] == "runs" or Path(path.parts[0]).exists())


def check_model_path(name: str, what: str = "model") -> None:
    """Refuse a path-like `name` (`is_local_path`) that does not exist, naming it; hub ids pass."""
    if name and is_local_path(name) and not Path(name).expanduser().exists():
        raise MissingPathError(f"no {what} at {name}: the path does not exist (a hub id has the form org/name)")
