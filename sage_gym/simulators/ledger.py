"""The simulator call ledger: every chat request and its raw answer in one SQLite file, to replay.

An LLM simulator's answers are the expensive, unrepeatable part of an evaluation or a training
run. With a ledger, each request is stored with its raw answer, token usage and latency, keyed by
a hash of everything that determines the answer: the endpoint, the model, the messages, the
sampling settings, the seed and the output mode. Re-running the same evaluation then replays the
recorded answers exactly, with the server stopped and at no cost.

| mode | a recorded request | a new request |
|---|---|---|
| `off` | sent | sent |
| `record` | sent again, the answer replaces the stored one | sent and stored |
| `replay` | answered from the ledger | `LedgerMiss`, naming the model and the request |
| `record-and-replay` | answered from the ledger | sent and stored |

    ledger = Ledger("calls.sqlite", mode="record-and-replay")
    answer = await ledger.call(request, send)   # send() -> the raw answer (a JSON-able dict)

`request` is the dict a client would send (`endpoint`, `model`, `messages`, sampling settings,
`seed`, `response_format`, ...). API keys, headers and timeouts are not part of it: they are
dropped before hashing and never stored (`NOT_PART_OF_THE_REQUEST`), and so is any user:password
in the endpoint URL. The file uses SQLite's write-ahead log, so readers never block the writer;
one `Ledger` is safe for many concurrent asyncio callers in one process (identical requests in
flight at once are sent once), and several processes may share a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MODES = ("off", "record", "replay", "record-and-replay")
# what a client sends besides the request itself: never part of the key, never stored
NOT_PART_OF_THE_REQUEST = frozenset({"api_key", "headers", "extra_headers", "authorization", "timeout", "extra_query", "max_retries"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    answer TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL NOT NULL,
    recorded_at TEXT NOT NULL
)
"""


class LedgerMiss(RuntimeError):
    """Replay mode was asked for a request the ledger has not recorded."""


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def canonical_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request without credentials and transport settings (what is hashed and stored)."""
    cleaned = {k: v for k, v in request.items() if k.lower() not in NOT_PART_OF_THE_REQUEST}
    for name in ("endpoint", "base_url"):
        if isinstance(cleaned.get(name), str):
            cleaned[name] = _without_credentials(cleaned[name])
    return cleaned


def request_key(request: Mapping[str, Any]) -> str:
    """sha256 of the canonical request as JSON with sorted keys: equal requests, equal keys."""
    text = json.dumps(canonical_request(request), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def usage_of(answer: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) of an OpenAI-format answer, or of one held as raw text
    under `body` (how an HTTP client stores it), None where it does not say."""
    if isinstance(answer.get("body"), str):
        try:
            answer = json.loads(answer["body"])
        except json.JSONDecodeError:
            return None, None
    usage = answer.get("usage") if isinstance(answer, Mapping) else None
    if not isinstance(usage, Mapping):
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


@dataclass
class LedgerStats:
    """What went through the ledger: requests `sent` to the endpoint, `replayed` from the file, `recorded`
    into it; tokens of all answers given (sent or replayed) and of those sent."""

    sent: int = 0
    replayed: int = 0
    recorded: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sent_prompt_tokens: int = 0
    sent_completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Ledger:
    """One SQLite ledger file, opened in one of `MODES`."""

    def __init__(self, path: str | Path, mode: str = "record-and-replay") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown ledger mode {mode!r}; expected one of {MODES}")
        self.path, self.mode = Path(path), mode
        if mode == "replay" and not self.path.is_file():
            raise FileNotFoundError(f"ledger {self.path} does not exist, so there is nothing to replay")
        self.stats = LedgerStats()
        self._lock = threading.Lock()  # sqlite3 connections are not safe across threads by themselves
        self._inflight: dict[tuple[int, str], asyncio.Future[dict[str, Any]]] = {}
        self._db: sqlite3.Connection | None = None
        if mode != "off":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, mode={self.mode!r})"

    # a copy (pickle, deepcopy) opens its own connection to the same file, with fresh counters
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "mode": self.mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["mode"])  # type: ignore[misc]

    def manifest(self) -> dict[str, Any]:
        return {"path": str(self.path), "mode": self.mode}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        if self._db is None:
            return 0
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    # ------------------------------------------------------------------ storage

    def lookup(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """The recorded raw answer to `request`, or None."""
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT answer FROM calls WHERE key = ?", (request_key(request),)).fetchone()
        return json.loads(row[0]) if row else None

    def store(self, request: Mapping[str, Any], answer: Mapping[str, Any], latency_s: float) -> None:
        """Record `answer` for `request` (replacing an earlier one), in one transaction."""
        if self._db is None:
            raise RuntimeError(f"ledger {self.path} is off: nothing is stored")
        prompt, completion = usage_of(answer)
        row = (
            request_key(request),
            json.dumps(canonical_request(request), sort_keys=True, ensure_ascii=False, default=str),
            json.dumps(answer, sort_keys=True, ensure_ascii=False),
            prompt,
            completion,
            round(float(latency_s), 6),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    # ------------------------------------------------------------------ the hook

    async def call(
        self,
        request: Mapping[str, Any],
        send: Callable[[], Awaitable[Mapping[str, Any]]],
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The answer to `request`: from the ledger or from `send()` (then recorded), by mode.

        `send` is the real request. When it raises, or returns an answer `keep` rejects (an HTTP
        error status, say), nothing is recorded and the answer goes back to the caller as it is,
        whose retries call `call` again.
        """
        if self.mode in ("replay", "record-and-replay"):
            stored = await asyncio.to_thread(self.lookup, request)
            if stored is not None:
                self._count(stored, sent=False)
                return stored
            if self.mode == "replay":
                raise LedgerMiss(
                    f"ledger {self.path} (replay mode) has no answer for this request to model {request.get('model')!r} "
                    f"(key {request_key(request)[:16]}); record it first (mode record-and-replay) or check that the "
                    "settings, scenarios and seeds match the recorded run"
                )
        if self.mode == "off":
            answer = dict(await send())
            self._count(answer, sent=True)
            return answer
        return await self._send_once(request, send, keep)

    async def _send_once(
        self, request: Mapping[str, Any], send: Callable[[], Awaitable[Mapping[str, Any]]], keep: Callable[[Mapping[str, Any]], bool] | None
    ) -> dict[str, Any]:
        # identical requests in flight at once on this loop share one send
        key = (id(asyncio.get_running_loop()), request_key(request))
        pending = self._inflight.get(key)
        if pending is not None:
            answer = await asyncio.shield(pending)
            self._count(answer, sent=False)
            return answer
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            started = time.perf_counter()
            answer = dict(await send())
            latency = time.perf_counter() - started
            self._count(answer, sent=True)
            if keep is None or keep(answer):
                await asyncio.to_thread(self.store, request, answer, latency)
                self.stats.recorded += 1
            future.set_result(answer)
            return answer
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[key]

    def _count(self, answer: Mapping[str, Any], sent: bool) -> None:
        prompt, completion = usage_of(answer)
        self.stats.prompt_tokens += prompt or 0
        self.stats.completion_tokens += completion or 0
        if sent:
            self.stats.sent += 1
            self.stats.sent_prompt_tokens += prompt or 0
            self.stats.sent_completion_tokens += completion or 0
        else:
            self.stats.replayed += 1


def cost(prompt_tokens: int, completion_tokens: int, price_per_1k: float | tuple[float, float]) -> float:
    """Dollars for the tokens at `price_per_1k` (one price for all tokens, or (prompt, completion))."""
    prompt_price, completion_price = (price_per_1k, price_per_1k) if isinstance(price_per_1k, (int, float)) else price_per_1k
    return round(prompt_tokens / 1000 * prompt_price + completion_tokens / 1000 * completion_price, 6)
