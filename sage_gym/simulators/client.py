"""ChatClient: a small OpenAI-compatible chat-completions client with bounded retries and deadlines.

    client = ChatClient("http://127.0.0.1:8000/v1", api_key=None, timeout=60, max_retries=5)
    text = await client.complete({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})

One class for every chat call sage_gym makes (the LLM simulator, the scenario generator) and that
an agent endpoint or an LLM judge can share. Each `complete` call is one request, retried:

| what happens                                   | what the client does |
|------------------------------------------------|----------------------|
| 2xx with a well-formed answer                  | `read(answer)`; an `Unreadable` from it is retried |
| 2xx with anything else (invalid JSON, arbitrary bytes, `choices: [null]`, wrong types, `finish_reason` "length") | retried (cause `malformed` or `truncated`) |
| timeout, connection error, 408, 409, 429, 5xx  | retried with exponential backoff and jitter, at least the server's `Retry-After` (capped) |
| 401, 403                                       | `ChatAuthError` at once, never retried |
| any status whose body says the `response_format` is refused (`response_format`, `json_schema`, `grammar`, `structured output`...) | `on_format_rejected(rejection)` may change the request (the caller steps down its output mode) and it is sent again at once; without that, `ChatError` |
| any other 4xx                                  | `ChatError` at once |

Retries stop after `max_retries` or when the `deadline` (a `time.monotonic()` instant the caller
passes, e.g. one per environment step) would pass; then `ChatError` (`ChatDeadlineError`) names
the endpoint, the attempts and the last cause. Nothing raised carries the API key: messages are
scrubbed of it (servers echo keys), and no exception chain is attached.

Why not the openai SDK: on 2 CPU cores it spends about 4 ms of CPU per call, and httpx alone
about as much, against 0.4 ms for this client, HTTP/1.1 through `h11` on asyncio streams
(benchmarks/http_clients.py). Requests go out over keep-alive connections, at most
`max_concurrency` at a time per event loop. Proxies
(`HTTP(S)_PROXY`) are not used; HTTPS is.

Connections are bound to the event loop that opened them, so each running loop gets its own
pool, made lazily. A client pickles and deep-copies as its settings (no connections, fresh
counters).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import re
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import h11
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from sage_gym.redaction import redact_text
from sage_gym.simulators.ledger import Ledger

T = TypeVar("T")
logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})
AUTH_STATUSES = frozenset({401, 403})
# What a server says when it refuses the response_format it was sent (any status).
FORMAT_REJECTION = re.compile(r"response_format|response format|json_schema|json_object|structured output|guided|grammar|\bschema\b", re.I)
MAX_RESPONSE_BYTES = 16 * 2**20  # an answer larger than this is not an answer
MAX_FORMAT_STEPS = 4  # request rewrites after format rejections within one attempt
USER_AGENT = "sage-gym-chat-client"


class ChatError(RuntimeError):
    """A chat call failed for good: retries spent, the deadline passed, or a request the server refuses."""

    def __init__(self, message: str, *, cause: str = "", status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.cause, self.status, self.attempts = cause, status, attempts


class ChatAuthError(ChatError):
    """HTTP 401 or 403: the key is missing, wrong, or may not use this model. Never retried."""


class ChatDeadlineError(ChatError):
    """The caller's deadline passed before an attempt succeeded."""


class Unreadable(ValueError):
    """Raised by a `read` function: the answer arrived but cannot be used; the call is retried."""


@dataclass(frozen=True)
class FormatRejection:
    """A server's refusal of the request's `response_format`, given to `on_format_rejected`."""

    status: int
    message: str


@dataclass(frozen=True)
class ChatAnswer:
    """The first choice of a chat completion, validated: `text` is a str or None."""

    text: str | None
    finish_reason: str | None
    refusal: str | None
    body: Mapping[str, Any]


@dataclass
class CallLog:
    """What one or more `complete` calls cost: requests sent, attempts, retries (pass one to `complete`)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    causes: dict[str, int] = field(default_factory=dict)  # retries by cause
    prompt_tokens: int = 0  # of every answer received (paid for, used or not), as its `usage` reports them
    completion_tokens: int = 0


@dataclass
class LockedCounters:
    """Integer counters that many event loops and threads add to; they pickle without their lock."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False, kw_only=True)

    def __getstate__(self) -> dict[str, Any]:  # a lock does not pickle
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


@dataclass
class ChatStats(LockedCounters):
    """Counters over the life of a client (all event loops and threads)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    format_rejections: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)

    def add_retry(self, cause: str) -> None:
        with self._lock:
            self.retries += 1
            self.retry_causes[cause] = self.retry_causes.get(cause, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "failures": self.failures,
                "format_rejections": self.format_rejections,
                "retry_causes": dict(self.retry_causes),
            }


@dataclass
class _CallProgress:
    """What one call has done so far, read by its retry policy and by the error it may raise."""

    label: str
    log: CallLog
    deadline: float | None  # a time.monotonic() instant
    attempts: int = 0
    stopped_by_deadline: bool = False

    def past_deadline(self, upcoming_sleep: float = 0.0) -> bool:
        """Whether the deadline has passed (or will have, after `upcoming_sleep`); remembered once true."""
        if self.deadline is not None and time.monotonic() + upcoming_sleep >= self.deadline:
            self.stopped_by_deadline = True
            return True
        return False


class _Transient(Exception):
    """One failed attempt that another attempt may fix."""

    def __init__(self, cause: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.cause, self.detail, self.retry_after = cause, detail, retry_after


class _Fatal(Exception):
    """A failure that retrying cannot fix."""

    def __init__(self, detail: str, status: int | None = None, cause: str = "rejected") -> None:
        super().__init__(detail)
        self.status, self.cause = status, cause


class _Rejected(Exception):
    def __init__(self, rejection: FormatRejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def answer_text(answer: ChatAnswer) -> str:
    """The default `read`: the answer's text, which must be there."""
    if answer.text is None:
        raise Unreadable(f"the answer has no text{f' (refusal: {answer.refusal})' if answer.refusal else ''}")
    return answer.text


class ChatClient:
    """An OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_concurrency: int = 32,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_retry_after: float = 30.0,
        headers: Mapping[str, str] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {display_url(base_url)!r}")
        for name, value in (("timeout", timeout), ("backoff_initial", backoff_initial), ("backoff_max", backoff_max), ("max_retry_after", max_retry_after)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (name == "timeout" and value == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'timeout' else '>= 0'}, got {value!r}")
        for name, value, low in (("max_retries", max_retries, 0), ("max_concurrency", max_concurrency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.endpoint = display_url(self.base_url)  # what messages show: no user:password, no query
        self.timeout, self.max_retries, self.max_concurrency = float(timeout), max_retries, max_concurrency
        self.backoff_initial, self.backoff_max, self.max_retry_after = float(backoff_initial), float(backoff_max), float(max_retry_after)
        self.stats = ChatStats()
        self.ledger = ledger  # records answers, or answers from its file (sage_gym.simulators.ledger)
        self.__api_key = api_key or ""
        self.__headers = dict(headers or {})
        self._secrets = tuple(s for s in [self.__api_key, *self.__headers.values()] if isinstance(s, str) and s)
        self._host, self._port, self._tls = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), parts.scheme == "https"
        self._target = f"{parts.path}/chat/completions" + (f"?{parts.query}" if parts.query else "")
        self._request_headers = self._build_headers()
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}

    def __repr__(self) -> str:
        return f"ChatClient({self.endpoint!r}, timeout={self.timeout:g}, max_retries={self.max_retries})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"], state["_pools"], state["stats"] = None, {}, ChatStats()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        """`text` without this client's key or header values, bearer tokens, or OpenAI-shaped keys."""
        return redact_text(text, self._secrets)

    # ------------------------------------------------------------------ the call

    async def complete(
        self,
        request: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        read: Callable[[ChatAnswer], T] = answer_text,  # type: ignore[assignment]
        *,
        deadline: float | None = None,
        on_format_rejected: Callable[[FormatRejection], bool] | None = None,
        allow_truncated: bool = False,
        log: CallLog | None = None,
        label: str | None = None,
    ) -> T:
        """POST `request` (a body, or a function that builds it for each attempt) to `/chat/completions`.

        Returns `read(answer)` (the answer's text by default). `deadline` is a `time.monotonic()`
        instant after which no attempt starts and none runs on. `on_format_rejected` is called
        when the server refuses the request's `response_format`; if it returns True the request
        is rebuilt and sent again within the same attempt. `label` names the call in errors and
        logs (default "chat call to <endpoint>"); `log` collects what the call cost.
        Raises ChatAuthError (401/403, at once), ChatDeadlineError, or ChatError.
        """
        build = request if callable(request) else (lambda: request)
        progress = _CallProgress(label or f"chat call to {self.endpoint}", log if log is not None else CallLog(), deadline)

        async def attempt_once() -> T:
            if progress.past_deadline():
                raise _Transient("deadline", "the deadline passed before the attempt began")
            progress.attempts += 1
            progress.log.attempts += 1
            return await self._attempt(build, read, deadline, on_format_rejected, allow_truncated, progress.log)

        failure: ChatError
        try:
            return await self._with_retries(attempt_once, progress)
        except (_Transient, _Fatal) as err:
            failure = self._failure(err, progress)
        self.stats.add("failures")
        # raised outside the except block, so no exception chain travels with it
        raise failure

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[T]], progress: _CallProgress) -> T:
        """`attempt_once` until it succeeds, fails for good, runs out of retries or passes the deadline."""
        # The first attempt runs outside tenacity (most calls need no retry, and its machinery
        # costs CPU on every call); if it fails, tenacity replays that failure as its attempt 1.
        try:
            return await attempt_once()
        except _Transient as err:
            first: _Transient | None = err

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > self.max_retries:
                return True
            return progress.past_deadline(getattr(state, "upcoming_sleep", 0.0) or 0.0)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            cause = error.cause if isinstance(error, _Transient) else "unknown"
            self.stats.add_retry(cause)
            progress.log.retries += 1
            progress.log.causes[cause] = progress.log.causes.get(cause, 0) + 1
            logger.info("%s: attempt %d failed (%s), retrying", progress.label, state.attempt_number, self.redact(str(error)))

        retrying = AsyncRetrying(stop=stop, wait=self._wait, retry=retry_if_exception_type(_Transient), before_sleep=before_sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                if first is not None:
                    replay, first = first, None
                    raise replay
                result = await attempt_once()
        return result

    def _failure(self, err: _Transient | _Fatal, progress: _CallProgress) -> ChatError:
        """The error a failed call raises: what failed, after how many attempts, secrets redacted."""
        tried = f"{progress.attempts} attempt{'s' if progress.attempts != 1 else ''}"
        if isinstance(err, _Fatal):
            kind = ChatAuthError if err.cause == "auth" else ChatError
            return kind(f"{progress.label} failed after {tried}: {self.redact(str(err))}", cause=err.cause, status=err.status, attempts=progress.attempts)
        if progress.stopped_by_deadline or err.cause == "deadline":
            return ChatDeadlineError(
                f"{progress.label} ran out of time: its deadline passed after {tried}: {self.redact(err.detail)}", cause="deadline", attempts=progress.attempts
            )
        return ChatError(f"{progress.label} failed after {tried}: {self.redact(err.detail)}", cause=err.cause, attempts=progress.attempts)

    def _wait(self, state: RetryCallState) -> float:
        # exponential backoff plus up to one initial step of jitter (spreads the retries of concurrent calls)
        delay = (wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max) + wait_random(0, self.backoff_initial))(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_retry_after))
        return delay

    async def _attempt(
        self,
        build: Callable[[], Mapping[str, Any]],
        read: Callable[[ChatAnswer], T],
        deadline: float | None,
        on_format_rejected: Callable[[FormatRejection], bool] | None,
        allow_truncated: bool,
        log: CallLog,
    ) -> T:
        for _ in range(MAX_FORMAT_STEPS):
            body = build()
            payload = encode_body(body)
            timeout = self.timeout if deadline is None else min(self.timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise _Transient("deadline", "the deadline passed before the request was sent")
            self.stats.add("requests")
            log.requests += 1
            status, headers, raw = await self._send(body, payload, timeout, deadline, read, allow_truncated)
            if 200 <= status < 300:
                answer = parse_answer(raw)
                _count_tokens(answer, log)
                if answer.finish_reason == "length" and not allow_truncated:
                    limit = body.get("max_tokens") or body.get("max_completion_tokens")
                    raise _Transient("truncated", f"the answer was cut off at max_tokens={limit} (finish_reason 'length')")
                try:
                    return read(answer)
                except Unreadable as err:
                    raise _Transient("unparseable", f"unreadable answer: {err}") from None
            try:
                raise classify_status(status, headers, raw, has_format="response_format" in body)
            except _Rejected as rejected:
                self.stats.add("format_rejections")
                if on_format_rejected is None or not on_format_rejected(rejected.rejection):
                    kind = body.get("response_format", {}).get("type") if isinstance(body.get("response_format"), dict) else None
                    raise _Fatal(
                        f"HTTP {status}: the server does not take response_format {kind!r}: {rejected.rejection.message}", status, cause="format"
                    ) from None
        raise _Fatal(f"the server kept refusing the response format after {MAX_FORMAT_STEPS} rewrites of the request")

    async def _send(
        self, body: Mapping[str, Any], payload: bytes, timeout: float, deadline: float | None, read: Callable[[ChatAnswer], Any], allow_truncated: bool
    ) -> tuple[int, dict[str, str], bytes]:
        """POST the request, or take its answer from the ledger when there is one (the one hook of the ledger).

        Only answers this call can use are recorded (2xx, a chat completion, not cut off, readable),
        so a failure that is retried never lands in the ledger; a replayed answer has no headers.
        """
        if self.ledger is None or self.ledger.mode == "off":
            return await self._post(payload, timeout, deadline)
        received: dict[str, str] = {}

        async def send() -> dict[str, Any]:
            status, headers, raw = await self._post(payload, timeout, deadline)
            received.update(headers)
            return {"status": status, "body": raw.decode("utf-8", "replace")}

        def usable(answer: Mapping[str, Any]) -> bool:
            try:
                parsed = parse_answer(answer["body"].encode("utf-8"))
                if parsed.finish_reason == "length" and not allow_truncated:
                    return False
                read(parsed)
            except (_Transient, Unreadable):
                return False
            return bool(200 <= answer["status"] < 300)

        answer = await self.ledger.call({"endpoint": self.endpoint, **body}, send, keep=usable)
        return answer["status"], received, answer["body"].encode("utf-8")

    # ------------------------------------------------------------------ HTTP/1.1 over asyncio streams

    def _build_headers(self) -> list[tuple[str, str]]:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        default_port = 443 if self._tls else 80
        headers = [("Host", host if self._port == default_port else f"{host}:{self._port}"), ("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]
        if self.__api_key:
            headers.append(("Authorization", f"Bearer {self.__api_key}"))
        headers += [(k, v) for k, v in self.__headers.items() if k.lower() not in ("host", "content-length", "content-type")]
        return headers

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [other for other in self._pools if other.is_closed()]:
                del self._pools[stale]  # its loop is gone; so are its connections
            pool = self._pools.get(loop)
            if pool is None:
                pool = self._pools[loop] = _Pool(self._host, self._port, self._tls, self.max_concurrency)
            return pool

    async def _post(self, payload: bytes, timeout: float, deadline: float | None) -> tuple[int, dict[str, str], bytes]:
        pool = self._pool()
        request = h11.Request(method="POST", target=self._target, headers=[*self._request_headers, ("Content-Length", str(len(payload)))])
        started = time.monotonic()
        slot_wait = None if deadline is None else max(0.0, deadline - started)
        try:
            if pool.slots.locked():  # wait for a free slot, but not past the deadline
                await asyncio.wait_for(pool.slots.acquire(), slot_wait)
            else:
                await pool.slots.acquire()
        except asyncio.TimeoutError:
            raise _Transient("deadline", "the deadline passed while waiting for a free connection") from None
        try:
            for fresh in (False, True):  # a kept-alive connection the server closed meanwhile gets one fresh try
                held: list[_Connection] = []  # the connection in use, for cleanup whatever happens
                idle = None if fresh else pool.idle_connection()
                if idle is not None:
                    held.append(idle)
                try:
                    status, headers, raw = await _within(timeout, self._exchange(pool, held, request, payload))
                except _StaleConnection:
                    _close_all(held)
                    continue
                except asyncio.TimeoutError:
                    _close_all(held)
                    raise _Transient("timeout", f"no answer within the timeout of {timeout:g} s") from None
                except (OSError, EOFError, asyncio.IncompleteReadError) as err:  # ssl.SSLError is an OSError
                    _close_all(held)
                    raise _Transient("connection", f"connection error after {time.monotonic() - started:.1f} s: {type(err).__name__}: {err}") from None
                except h11.ProtocolError as err:
                    _close_all(held)
                    raise _Transient("malformed", f"the server's answer is not valid HTTP: {err}") from None
                except BaseException:  # cancelled, or an oversized answer: never reuse a connection mid-exchange
                    _close_all(held)
                    raise
                pool.release(held[-1])
                return status, headers, raw
            raise _Transient("connection", "the server closed the connection before answering")
        finally:
            pool.slots.release()

    @staticmethod
    async def _exchange(pool: _Pool, held: list[_Connection], request: h11.Request, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        if not held:
            held.append(await pool.connect())
        return await held[-1].exchange(request, payload)

    async def aclose(self) -> None:
        """Close the running event loop's connections (others close with their loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.aclose()


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, cancelled after `seconds` with asyncio.TimeoutError (no extra task on Python 3.11+)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _close_all(connections: list[_Connection]) -> None:
    for connection in connections:
        connection.close()


class _StaleConnection(Exception):
    """A reused connection failed before any answer arrived: the server had closed it."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reused: bool = False) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.reused = reused

    async def exchange(self, request: h11.Request, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        protocol = self.protocol
        try:
            self.writer.write(protocol.send(request) + protocol.send(h11.Data(data=payload)) + protocol.send(h11.EndOfMessage()))
            await self.writer.drain()
            data = await self.reader.read(65536)
        except (OSError, EOFError):
            if self.reused:
                raise _StaleConnection() from None
            raise
        if not data and self.reused:
            raise _StaleConnection()
        status, headers, chunks, size = 0, {}, [], 0
        while True:
            protocol.receive_data(data)
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_RESPONSE_BYTES:
                        raise _Transient("malformed", f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
                        protocol.start_next_cycle()
                        self.reused = True
                    else:
                        self.reused = False
                        self.close()
                    return status, headers, b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise EOFError("the server closed the connection mid-answer")
            data = await self.reader.read(65536)

    @property
    def reusable(self) -> bool:
        return self.reused and not self.writer.is_closing()

    def close(self) -> None:
        self.reused = False
        try:
            self.writer.close()
        except RuntimeError:  # its loop is already closed
            pass


class _Pool:
    """Keep-alive connections to one host for one event loop, at most `size` in use at once."""

    def __init__(self, host: str, port: int, tls: bool, size: int) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []

    def idle_connection(self) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable:
                return connection
            connection.close()
        return None

    async def connect(self) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context, limit=MAX_RESPONSE_BYTES)
        return _Connection(reader, writer)

    def release(self, connection: _Connection) -> None:
        if connection.reusable:
            self.idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            try:
                await connection.writer.wait_closed()
            except (OSError, RuntimeError):
                pass


# ----------------------------------------------------------------------------------------------
# reading answers and errors


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request as JSON bytes, ASCII-escaped (any str encodes, even a lone surrogate).

    Chat messages repeat from call to call (a dialogue's system prompt; the emotion-update prompt
    that the reply call sends again), so each `{role, content}` message is encoded once and
    remembered: the same bytes as `json.dumps(body)`, for less CPU.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(type(m) is dict and m.keys() == {"role", "content"} for m in messages):
        return json.dumps(body).encode()
    rest = json.dumps({k: v for k, v in body.items() if k != "messages"})
    encoded = ", ".join(_encoded_message(m["role"], m["content"]) if type(m["role"]) is str and type(m["content"]) is str else json.dumps(m) for m in messages)
    return f'{rest[:-1]}{", " if len(rest) > 2 else ""}"messages": [{encoded}]}}'.encode()


@functools.lru_cache(maxsize=2048)
def _encoded_message(role: str, content: str) -> str:
    return json.dumps({"role": role, "content": content})


def _count_tokens(answer: ChatAnswer, log: CallLog) -> None:
    usage = answer.body.get("usage")
    if isinstance(usage, Mapping):
        for name in ("prompt_tokens", "completion_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(log, name, getattr(log, name) + value)


def parse_answer(raw: bytes) -> ChatAnswer:
    """The first choice of a 2xx body; `_Transient("malformed")` for anything that is not a chat completion."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # invalid JSON or UTF-8, or absurd nesting
        raise _Transient("malformed", f"the answer is not JSON: {_snippet(raw)}") from None
    if not isinstance(body, dict):
        raise _Transient("malformed", f"the answer is a JSON {type(body).__name__}, not an object: {_snippet(raw)}")
    if "error" in body and not body.get("choices"):  # some proxies answer errors with status 200
        raise _Transient("server_error", f"the answer is an error: {error_message(raw)}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Transient("malformed", f"the answer has no choices: {_snippet(raw)}")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _Transient("malformed", f"the answer's first choice has no message: {_snippet(raw)}")
    text, refusal, finish_reason = message.get("content"), message.get("refusal"), choice.get("finish_reason")
    if text is not None and not isinstance(text, str):
        raise _Transient("malformed", f"the answer's content is a {type(text).__name__}, not text")
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" escapes in the JSON: no text any writer could store
            raise _Transient("malformed", "the answer's content is not valid Unicode (a lone surrogate)") from None
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise _Transient("malformed", f"the answer's finish_reason is a {type(finish_reason).__name__}, not text")
    return ChatAnswer(text=text, finish_reason=finish_reason, refusal=refusal if isinstance(refusal, str) else None, body=body)


def error_message(raw: bytes, limit: int = 600) -> str:
    """The message of an error body in any of the shapes servers use, else the body's start."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):  # LM Studio, Ollama's native API
            message = error
        if message is None:
            message = body.get("message", body.get("detail"))  # vLLM/SGLang's top-level shape, FastAPI
    if message is None:
        return _snippet(raw, limit).strip("'\"")
    text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def classify_status(status: int, headers: Mapping[str, str], raw: bytes, has_format: bool) -> Exception:
    """The failure a non-2xx answer is: `_Rejected` (response format refused), `_Transient` or `_Fatal`."""
    message = error_message(raw)
    if status in AUTH_STATUSES:
        hint = "the endpoint refused the API key (set it, or pass api_key=...)" if status == 401 else "the API key may not use this model or endpoint"
        return _Fatal(f"HTTP {status}: {hint}: {message}", status, cause="auth")
    if has_format and status not in RETRY_STATUSES and status != 404 and FORMAT_REJECTION.search(message):
        return _Rejected(FormatRejection(status, message))
    if status in RETRY_STATUSES or status >= 500:
        cause = "rate_limit" if status == 429 else ("server_error" if status >= 500 else f"http_{status}")
        return _Transient(cause, f"HTTP {status}: {message}", retry_after=retry_after_seconds(headers))
    if status == 404:
        return _Fatal(f"HTTP 404: unknown model or wrong base_url (OpenAI-compatible servers serve under .../v1): {message}", status)
    return _Fatal(f"HTTP {status}: the endpoint rejected the request: {message}", status)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent or unreadable."""
    try:
        if headers.get("retry-after-ms") is not None:
            value = float(headers["retry-after-ms"]) / 1000.0
        elif headers.get("retry-after") is not None:
            raw = headers["retry-after"]
            try:
                value = float(raw)
            except ValueError:
                value = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        else:
            return None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, value) if math.isfinite(value) else None


def display_url(url: str) -> str:
    """The URL without user:password and without a query string (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _snippet(raw: bytes | str, limit: int = 160) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
