"""Where the shipped data lives: `personas/` and `prompts/`.

In a checkout they sit at the top of the repository; in an installed wheel they are packaged
under `sage_gym/_data/` (see `[tool.hatch.build.targets.wheel.force-include]` in pyproject.toml).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent)


@lru_cache(maxsize=None)
def data_root(kind: str) -> Path:
    """The folder holding `kind` ("personas" or "prompts"), installed copy first."""
    for base in _CANDIDATES:
        if (base / kind).is_dir():
            return base / kind
    searched = ", ".join(str(base / kind) for base in _CANDIDATES)
    raise FileNotFoundError(f"sage_gym data folder {kind!r} not found (searched {searched}); is the package installed correctly?")


def data_path(kind: str, name: str) -> Path:
    return data_root(kind) / name


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
