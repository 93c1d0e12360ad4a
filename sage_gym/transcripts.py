"""Append-only JSONL transcripts: one finished episode per line, written whole.

Each line is encoded completely in memory and written with a single `write` to a file opened
in append mode, then flushed and fsynced, so a crash can lose at most the episode in flight,
never tear a line that was already written. Records carry the manifest needed to reproduce
and audit a score (simulator kind and model, sampling parameters, prompt and scenario hashes,
package version, seed).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.Lock())


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line; the line is either fully there or not at all."""
    path = Path(path)
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock_for(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            while written < len(line):  # rare short write: finish the same line
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a transcript file; a torn last line (from a crash elsewhere) is skipped, not fatal."""
    with Path(path).open(encoding="utf-8") as handle:
        lines = handle.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                return
            raise


class TranscriptWriter:
    """Opt-in recorder for finished episodes (pass `transcript_path=` to the environment)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, record: Mapping[str, Any]) -> None:
        append_jsonl(self.path, record)
