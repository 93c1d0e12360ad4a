"""Training transcripts: every dialogue of every step, tagged with its step, written once.

Each record is the environment's transcript record (scenario, seed, turns, emotions, manifest)
plus the learner's bookkeeping: `step`, `group` (the GRPO group: dialogues of one scenario that
share a baseline), `dialogue` (its index in the step's global batch) and, under torchrun, `rank`.
Records are appended one line at a time with `sage_gym.transcripts.append_jsonl` (a record is
either whole on disk or absent).

A run interrupted after writing some step's records but before that step's checkpoint replays the
step when resumed; `drop_after(path, step)` first removes every record of a later step than the
checkpoint's, so no dialogue is written twice. The metrics log gets the same treatment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sage_gym.transcripts import append_jsonl, repair_jsonl


def write_transcripts(path: str | Path, step: int, records: Iterable[Mapping[str, Any]], rank: int | None = None) -> None:
    """Append one step's records, each tagged with `step` (and `rank` when given)."""
    for record in records:
        tagged = {"step": step, **record}
        if rank is not None:
            tagged["rank"] = rank
        append_jsonl(path, tagged)


def drop_after(path: str | Path, step: int) -> int:
    """Remove the records of steps after `step` (and any torn line) from a JSONL file; how many were removed.

    Lines are kept byte for byte; the file is replaced atomically (written beside it, then renamed),
    so a crash during the repair leaves either the old file or the new one.
    """
    path = Path(path)
    if not path.exists():
        return 0
    repair_jsonl(path)  # a torn last line (a kill mid-write) is not a record
    kept, dropped = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            record = _record(raw)
            if record is None or (isinstance(record.get("step"), int) and record["step"] > step):
                dropped += 1
                continue
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if dropped:
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.writelines(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    return dropped


def _record(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
