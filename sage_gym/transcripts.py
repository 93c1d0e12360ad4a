"""Append-only JSONL files (transcripts, logs) that a crash can never leave unreadable.

Each record is encoded completely in memory and written with a single `write` to a file opened in
append mode, then fsynced. If the kernel writes only part of it (a full disk), the partial line
is cut off again before the error is raised. A line torn some other way (the machine lost power
mid-write, or a file from an older writer) is dealt with on both sides:

- the writer repairs a torn tail before appending (it cuts the file back to its last complete
  line, so the new record starts on a line of its own), and
- the reader skips lines that are not JSON objects, with a warning naming the file and line, and
  recovers a record that was appended straight after a torn one on the same line.

`repair_jsonl(path)` does the writer's repair on demand (a resumer can call it first) and says how
many bytes it dropped. Records carry the manifest needed to reproduce and audit a score
(simulator kind and model, sampling parameters, prompt and scenario hashes, package version,
seed).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.Lock())


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line, UTF-8. Text that UTF-8 cannot hold (lone surrogates) is written as JSON escapes."""
    try:
        return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line with one write; the line is either fully there or not at all."""
    path = Path(path)
    line = encode_record(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock_for(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = _cut_torn_tail(fd, path)
            written = os.write(fd, line)
            if written != len(line):  # a short write (disk full): take the partial line back out
                os.ftruncate(fd, size)
                raise OSError(f"{path}: only {written} of {len(line)} bytes of a record could be written; the record was not kept")
            os.fsync(fd)
        finally:
            os.close(fd)


def repair_jsonl(path: str | Path) -> int:
    """Cut a torn last line (one without its newline) off `path`; the number of bytes dropped (0 if none)."""
    path = Path(path)
    if not path.exists():
        return 0
    with _lock_for(path):
        fd = os.open(path, os.O_RDWR)
        try:
            before = os.fstat(fd).st_size
            return before - _cut_torn_tail(fd, path)
        finally:
            os.close(fd)


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Truncate the file after its last newline if it does not end with one; the resulting size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end, block = size, 1 << 16
    while end > 0:  # find the last newline, reading backwards
        start = max(0, end - block)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return keep


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, skipping (with a warning) torn or corrupt lines instead of failing."""
    path = Path(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            record = _decode_line(raw)
            if record is None:
                log.warning("%s:%d: skipping a line that is not a JSON record (torn by an interrupted write?)", path, lineno)
                continue
            yield record


def _decode_line(raw: bytes) -> dict[str, Any] | None:
    """The record on a line; for a torn record with a whole one appended to it, the whole one."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    # an older writer appended a full record straight after a torn one: it is the last '{"' that parses
    start = text.rfind('{"')
    while start > 0:
        try:
            value = json.loads(text[start:])
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        start = text.rfind('{"', 0, start)
    return None


class TranscriptWriter:
    """Opt-in recorder for finished episodes (pass `transcript_path=` to the environment)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, record: Mapping[str, Any]) -> None:
        append_jsonl(self.path, record)
