"""OpenAISimulator: the simulated user as an LLM behind any OpenAI-compatible chat endpoint.

Works with OpenAI, vLLM, llama.cpp's server, Ollama, SGLang and the local server of this package
(`python -m sage_gym.simulators.server`, the built-in simulator over HTTP). A user turn is two
chat calls (emotion update, then reply; see `sage_gym.simulators.prompting`), or one call with
`single_call=True`.

| setting          | argument          | environment fallback                                  |
|------------------|-------------------|-------------------------------------------------------|
| endpoint         | `base_url`        | `SAGE_SIMULATOR_BASE_URL`, `OPENAI_BASE_URL`, OpenAI's |
| model            | `model`           | `SAGE_SIMULATOR_MODEL` (required)                     |
| API key          | `api_key`         | `SAGE_SIMULATOR_API_KEY`, `OPENAI_API_KEY`, `"EMPTY"` for non-OpenAI hosts |

Structured output: `output_format="auto"` asks for `response_format` `json_schema`; a server that
rejects it (400/422 naming the response format) is asked for `json_object` with the schema (what
llama.cpp's Python server takes), then for tagged text (`Change: +5` lines). The mode that works
is remembered per endpoint (base_url and model) for the life of the process. Every answer is
parsed leniently and validated whatever the server promised.

Reliability: each call has a timeout; timeouts, connection errors, 408, 409, 429 (honouring
Retry-After, capped at `max_retry_after`), 5xx, and unreadable or truncated answers are retried
up to `max_retries` times with exponential backoff and jitter (tenacity; the SDK's own retries are
off). When the budget is spent, or on an error that retrying cannot fix (401, 404, a rejected
request), `react` raises `SimulatorError` naming the endpoint, the model, the attempt count and
the last cause, never the API key, and the dialogue's state is unchanged. Retries are counted in
`stats` and in each `Reaction.analysis`.

Connections: one `AsyncOpenAI` client (one connection pool) and one concurrency limit per
simulator instance and event loop. Clients are bound to the loop they were created on, so they
are made lazily for the running loop: sage_gym's environments all run on one background loop,
and a caller awaiting `react` from its own loop gets its own client. Share one instance between
environments to share its pool and its limit.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from sage_gym.prompts import PromptLibrary, default_prompts
from sage_gym.scenarios import Scenario
from sage_gym.simulators.base import Message, Reaction, Rules, SimulatorError, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.parsing import ParseError, parse_emotion_update, parse_single_call, parse_user_reply
from sage_gym.simulators.prompting import (
    RESPONSE_MODES,
    emotion_update_messages,
    plain_history,
    response_format,
    single_call_messages,
    user_reply_messages,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_BASE_URL, ENV_MODEL, ENV_API_KEY = "SAGE_SIMULATOR_BASE_URL", "SAGE_SIMULATOR_MODEL", "SAGE_SIMULATOR_API_KEY"
OPENAI_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_API_KEY = "EMPTY"  # local servers ignore the key, but the SDK insists on one
OUTPUT_FORMATS = ("auto",) + RESPONSE_MODES
RETRY_STATUSES = frozenset({408, 409, 429})
# A 400/422/501 whose message names one of these is a server that does not take this response_format.
_FORMAT_REJECTION = re.compile(r"response_format|response format|json_schema|json_object|schema|structured output|guided|grammar", re.I)

# The response mode that works for each endpoint (display base_url, model), shared by all instances.
_MODE_MEMORY: dict[tuple[str, str], str] = {}
_MODE_LOCK = threading.Lock()


def forget_response_modes() -> None:
    """Forget which response mode each endpoint takes (the next calls probe from json_schema again)."""
    with _MODE_LOCK:
        _MODE_MEMORY.clear()


class _Transient(Exception):
    """One failed attempt that another attempt may fix."""

    def __init__(self, cause: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.cause, self.detail, self.retry_after = cause, detail, retry_after


class _Fatal(Exception):
    """A failure that retrying cannot fix (bad key, unknown model, rejected request)."""


@dataclass
class SimulatorStats:
    """Counters over the life of a simulator (all event loops and threads).

    `calls` are chat requests sent, `retries` the attempts that followed a failed one (by cause in
    `retry_causes`), `failures` the `react` calls that raised, `fallbacks` the response-mode
    downgrades.
    """

    reactions: int = 0
    calls: int = 0
    retries: int = 0
    failures: int = 0
    fallbacks: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def add_retry(self, cause: str) -> None:
        with self._lock:
            self.retries += 1
            self.retry_causes[cause] = self.retry_causes.get(cause, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "reactions": self.reactions,
                "calls": self.calls,
                "retries": self.retries,
                "failures": self.failures,
                "fallbacks": self.fallbacks,
                "retry_causes": dict(self.retry_causes),
            }


@dataclass
class _TurnLog:
    """What one `react` cost: requests, attempts, retries, and the response mode that answered."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    mode: str = ""


class OpenAISimulator:
    """A simulated user played by an LLM behind an OpenAI-compatible endpoint (see the module docstring)."""

    kind = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        max_tokens: int | None = 512,
        seed: bool = True,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_concurrency: int = 32,
        output_format: str = "auto",
        single_call: bool = False,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_retry_after: float = 30.0,
        prompts: PromptLibrary | str | Path | None = None,
    ) -> None:
        model = model or os.environ.get(ENV_MODEL) or ""
        if not isinstance(model, str) or not model.strip():
            raise ValueError(
                f"OpenAISimulator needs a model name: pass model=... (simulator_kwargs={{'model': ...}}) or set {ENV_MODEL}"
            )
        base_url = base_url or os.environ.get(ENV_BASE_URL) or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
        api_key = api_key or os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY") or ""
        if not api_key:
            if urlsplit(base_url).hostname == urlsplit(OPENAI_BASE_URL).hostname:
                raise ValueError(f"OpenAISimulator needs an API key for {OPENAI_BASE_URL}: pass api_key=... or set {ENV_API_KEY}")
            api_key = PLACEHOLDER_API_KEY
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
        _check_number("timeout", timeout, low=0.0, strict=True)
        _check_number("backoff_initial", backoff_initial, low=0.0)
        _check_number("backoff_max", backoff_max, low=0.0)
        _check_number("max_retry_after", max_retry_after, low=0.0)
        if temperature is not None:
            _check_number("temperature", temperature, low=0.0)
        if top_p is not None:
            _check_number("top_p", top_p, low=0.0, high=1.0, strict=True)
        for name, value, low in (("max_retries", max_retries, 0), ("max_concurrency", max_concurrency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")

        self.model = model.strip()
        self.base_url = base_url.rstrip("/")
        self.endpoint = _display_url(self.base_url)  # what messages and manifests show
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = bool(seed)
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.output_format = output_format
        self.single_call = bool(single_call)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.prompts = prompts if isinstance(prompts, PromptLibrary) else (PromptLibrary(prompts) if prompts else default_prompts())
        self.stats = SimulatorStats()
        self.__api_key = api_key  # name-mangled and never printed: see __repr__, manifest, _redact
        self._lock = threading.Lock()
        self._clients: dict[asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, asyncio.Semaphore]] = {}

    def __repr__(self) -> str:
        return f"OpenAISimulator(model={self.model!r}, base_url={self.endpoint!r}, output_format={self.output_format!r}, single_call={self.single_call})"

    # pickling and deepcopy carry the settings, not the loop-bound clients
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"], state["_clients"] = None, {}
        state["stats"] = SimulatorStats()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ Simulator protocol

    async def open(self, scenario: Scenario, rng: np.random.Generator, rules: Rules) -> UserState:
        # the same draw as the built-in simulator, so a seed gives the same dialogue seed with either
        return UserState(emotion=rules.initial_emotion, rules=rules, turn=0, seed=int(rng.integers(2**31 - 1)))

    async def react(self, scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str) -> Reaction:
        """The user's reaction; raises SimulatorError (state untouched) when the endpoint cannot give one."""
        rules, turn = state.rules, _TurnLog()
        visible = plain_history(history)
        try:
            if self.single_call:
                update, reply = await self._call(
                    "single_call",
                    lambda mode: single_call_messages(self.prompts, scenario, rules, state.emotion, visible, agent_reply, mode),
                    lambda text: parse_single_call(text, rules.change_clip),
                    state.seed,
                    turn,
                )
                emotion = clamp_emotion(state.emotion + update.change)
                ending = _ending(rules, emotion)
            else:
                update = await self._call(
                    "emotion_update",
                    lambda mode: emotion_update_messages(self.prompts, scenario, rules, state.emotion, visible, agent_reply, mode),
                    lambda text: parse_emotion_update(text, rules.change_clip),
                    state.seed,
                    turn,
                )
                emotion = clamp_emotion(state.emotion + update.change)
                ending = _ending(rules, emotion)
                bucket = emotion_bucket(emotion)
                reply = await self._call(
                    "user_reply",
                    lambda mode: user_reply_messages(
                        self.prompts, scenario, rules, state.emotion, visible, agent_reply, update, bucket, ending, mode
                    ),
                    parse_user_reply,
                    state.seed,
                    turn,
                )
        except SimulatorError:
            self.stats.add("failures")
            raise
        self.stats.add("reactions")
        return Reaction(
            emotion=emotion,
            change=update.change,
            bucket=emotion_bucket(emotion),
            thoughts=update.thoughts,
            reply=reply.reply,
            leaves=bool(ending) or reply.leaves,
            state=UserState(emotion=emotion, rules=rules, turn=state.turn + 1, seed=state.seed, memory=state.memory),
            analysis={
                "meaning": update.meaning,
                "goal": update.goal,
                "feeling": update.feeling,
                "calls": turn.calls,
                "attempts": turn.attempts,
                "retries": turn.retries,
                "output_format": turn.mode,
            },
        )

    def manifest(self) -> dict[str, Any]:
        """Everything that shapes this simulator's answers (never the API key)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "base_url": self.endpoint,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "output_format": self.output_format,
            "output_format_in_use": self._mode(),
            "single_call": self.single_call,
            "prompts_sha256": self.prompts.sha256(),
            "openai_sdk": openai.__version__,
        }

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop (others close with their loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].close()

    async def __aenter__(self) -> OpenAISimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(self, name: str, build: Callable[[str], list[dict[str, str]]], parse: Callable[[str], T], seed: int = 0) -> T:
        """One chat call through this endpoint's client, limits, retries and response-format fallback.

        `name` picks the JSON schema (`sage_gym.simulators.prompting.SCHEMAS`), `build(mode)` makes
        the messages and `parse(text)` reads the answer (a ParseError is retried). The scenario
        generator uses this, so every call to an LLM endpoint goes through one code path.
        """
        return await self._call(name, build, parse, seed, _TurnLog())

    # ------------------------------------------------------------------ one call, with retries

    async def _call(self, name: str, build: Callable[[str], list[dict[str, str]]], parse: Callable[[str], T], seed: int, turn: _TurnLog) -> T:
        """One chat call (`name` picks the schema), retried on transient failures; SimulatorError when spent."""
        attempts = 0

        def on_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            cause = error.cause if isinstance(error, _Transient) else "unknown"
            self.stats.add_retry(cause)
            turn.retries += 1
            log.info("simulator %s call to %s (model %s): attempt %d failed (%s), retrying", name, self.endpoint, self.model, state.attempt_number, self._redact(str(error)))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=on_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    turn.attempts += 1
                    result = await self._attempt(name, build, parse, seed, turn)
            return result
        except (_Transient, _Fatal) as err:
            cause = self._redact(str(err))
        # raised outside the except block, so no exception chain (whose SDK errors hold the
        # request and with it the Authorization header) travels with the SimulatorError
        raise SimulatorError(
            f"simulator {name} call to {self.endpoint} (model {self.model!r}) failed after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {cause}"
        )

    def _wait(self, state: RetryCallState) -> float:
        # exponential backoff plus up to one initial step of jitter (spreads the retries of concurrent dialogues)
        delay = (wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max) + wait_random(0, self.backoff_initial))(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_retry_after))
        return delay

    async def _attempt(self, name: str, build: Callable[[str], list[dict[str, str]]], parse: Callable[[str], T], seed: int, turn: _TurnLog) -> T:
        client, limit = self._connection()
        while True:  # loops only to step down the response modes
            mode = self._mode()
            request: dict[str, Any] = {"model": self.model, "messages": build(mode), "timeout": self.timeout}
            for key, value in (("temperature", self.temperature), ("top_p", self.top_p), ("max_tokens", self.max_tokens)):
                if value is not None:
                    request[key] = value
            if self.seed:
                request["seed"] = seed
            if (fmt := response_format(mode, name)) is not None:
                request["response_format"] = fmt
            self.stats.add("calls")
            turn.calls += 1
            started = time.monotonic()
            try:
                async with limit:
                    # the SDK's timeout is per read; wait_for bounds the whole call
                    response = await asyncio.wait_for(client.chat.completions.create(**request), self.timeout)
            except (asyncio.TimeoutError, openai.APITimeoutError):
                raise _Transient("timeout", f"no answer within the timeout of {self.timeout:g} s") from None
            except openai.APIConnectionError as err:
                reason = f"{err} ({err.__cause__})" if err.__cause__ else str(err)  # the SDK's text alone is "Connection error."
                raise _Transient("connection", f"connection error after {time.monotonic() - started:.1f} s: {reason}") from None
            except openai.APIStatusError as err:
                if self.output_format == "auto" and mode != "tagged" and _rejects_response_format(err):
                    self._fall_back(mode, err)
                    continue
                raise _status_failure(err, mode) from None
            turn.mode = mode
            return self._read(response, parse)

    def _read(self, response: Any, parse: Callable[[str], T]) -> T:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise _Transient("unparseable", "the answer has no choices")
        choice = choices[0]
        text = getattr(choice.message, "content", None)
        if choice.finish_reason == "length":
            raise _Transient("truncated", f"the answer was cut off at max_tokens={self.max_tokens} (finish_reason 'length')")
        if not isinstance(text, str):
            refusal = getattr(choice.message, "refusal", None)
            raise _Transient("unparseable", f"the answer has no text{f' (refusal: {refusal})' if refusal else ''}")
        try:
            return parse(text)
        except ParseError as err:
            raise _Transient("unparseable", f"unreadable answer: {err}") from None

    # ------------------------------------------------------------------ clients, modes, secrets

    def _connection(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        """This loop's client and concurrency limit, made on first use (clients are loop-bound)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]  # its loop is gone; so are its connections
            entry = self._clients.get(loop)
            if entry is None:
                client = openai.AsyncOpenAI(api_key=self.__api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
                entry = self._clients[loop] = (client, asyncio.Semaphore(self.max_concurrency))
            return entry

    @property
    def _endpoint_key(self) -> tuple[str, str]:
        return (self.endpoint, self.model)

    def _mode(self) -> str:
        if self.output_format != "auto":
            return self.output_format
        with _MODE_LOCK:
            return _MODE_MEMORY.get(self._endpoint_key, RESPONSE_MODES[0])

    def _fall_back(self, failed: str, err: openai.APIStatusError) -> None:
        following = RESPONSE_MODES[RESPONSE_MODES.index(failed) + 1]
        with _MODE_LOCK:
            current = _MODE_MEMORY.get(self._endpoint_key, RESPONSE_MODES[0])
            if RESPONSE_MODES.index(current) < RESPONSE_MODES.index(following):  # never step back up
                _MODE_MEMORY[self._endpoint_key] = following
        self.stats.add("fallbacks")
        log.info("%s (model %s) rejected response_format %s (%s); using %s", self.endpoint, self.model, failed, err.status_code, following)

    def _redact(self, text: str) -> str:
        """`text` without the API key, bearer tokens or anything shaped like an OpenAI key."""
        if len(self.__api_key) >= 4:
            text = text.replace(self.__api_key, "***")
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
        return re.sub(r"\bsk-[\w\-*.]{4,}", "sk-***", text)


# ----------------------------------------------------------------------------------------------
# helpers


def _ending(rules: Rules, emotion: int) -> str:
    """What the rules decide: "success" at the top, "failure" at the bottom, else "" (the user may still leave)."""
    if emotion >= rules.success_at:
        return "success"
    if emotion < rules.failure_below:
        return "failure"
    return ""


def _rejects_response_format(err: openai.APIStatusError) -> bool:
    if err.status_code not in (400, 422, 501):
        return False
    body = err.body if isinstance(err.body, str) else repr(err.body)
    return bool(_FORMAT_REJECTION.search(f"{err.message} {body}"))


def _status_failure(err: openai.APIStatusError, mode: str) -> Exception:
    """A retryable _Transient for 408/409/429/5xx, a _Fatal with a hint for everything else."""
    status = err.status_code
    message = _status_message(err)
    if status in RETRY_STATUSES or status >= 500:
        cause = "rate_limit" if status == 429 else ("server_error" if status >= 500 else f"http_{status}")
        return _Transient(cause, f"HTTP {status}: {message}", retry_after=retry_after_seconds(getattr(err.response, "headers", None) or {}))
    hints = {
        401: "the endpoint refused the API key; set SAGE_SIMULATOR_API_KEY (or pass api_key=...)",
        403: "the API key may not use this model or endpoint",
        404: "unknown model or wrong base_url (OpenAI-compatible servers serve under .../v1)",
    }
    if status in (400, 422) and mode != "tagged" and _rejects_response_format(err):
        hint = f"the server does not take response_format {mode!r}; use output_format='auto' or 'tagged'"
    else:
        hint = hints.get(status, "the endpoint rejected the request")
    return _Fatal(f"HTTP {status}: {hint}: {message}")


def _status_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(err.message)


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


def _display_url(url: str) -> str:
    """The base URL without user:password and without a query string (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_number(name: str, value: Any, low: float | None = None, high: float | None = None, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
