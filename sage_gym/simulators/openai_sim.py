"""OpenAISimulator: the simulated user as an LLM behind any OpenAI-compatible chat endpoint.

Works with OpenAI, vLLM, llama.cpp's server, Ollama, SGLang and the local server of this package
(`python -m sage_gym.servers.simulator_server`, the built-in simulator over HTTP). A user turn is two
chat calls (emotion update, then reply; see `sage_gym.simulators.prompting`), or one call with
`single_call=True`.

| setting          | argument          | environment fallback                                  |
|------------------|-------------------|-------------------------------------------------------|
| endpoint         | `base_url`        | `SAGE_SIMULATOR_BASE_URL`, `OPENAI_BASE_URL`, OpenAI's |
| model            | `model`           | `SAGE_SIMULATOR_MODEL` (required)                     |
| API key          | `api_key`         | `SAGE_SIMULATOR_API_KEY`, `OPENAI_API_KEY`, `"EMPTY"` for non-OpenAI hosts |

Structured output: `output_format="auto"` asks for `response_format` `json_schema`; a server that
refuses it (any status whose body names the response format, the schema or a grammar: vLLM,
llama.cpp, llama-cpp-python's HTTP 500, LM Studio, OpenAI's older models) is asked for
`json_object` with the schema (what llama-cpp-python takes), then for tagged text
(`Change: +5` lines). The mode that works is remembered per endpoint (base_url and model) for the
life of the process. Every answer is parsed leniently and validated whatever the server promised.

Reliability: requests go through `sage_gym.simulators.client.ChatClient`. Each call has a
timeout; timeouts, connection errors, 408, 409, 429 (honouring Retry-After, capped at
`max_retry_after`), 5xx, and malformed, unreadable or truncated answers are retried up to
`max_retries` times with exponential backoff and jitter (tenacity). A user turn (both calls, all
attempts) must finish within `step_timeout` seconds. When the budget or the time is spent, or on
an error that retrying cannot fix (401, 403, 404, a rejected request), `react` raises
`SimulatorError` naming the endpoint, the model, the attempt count and the last cause, never the
API key, and the dialogue's state is unchanged. Retries are counted in `stats` and in each
`Reaction.analysis`.

Connections: one keep-alive pool and one concurrency limit per simulator instance and event loop
(made lazily for the running loop: sage_gym's environments all run on one background loop, and a
caller awaiting `react` from its own loop gets its own pool). Share one instance between
environments to share its pool and its limit. An instance pickles and deep-copies as its
settings: the copy opens its own connections and starts its counters at zero.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import h11
import numpy as np

from sage_gym.prompts import PromptLibrary, default_prompts
from sage_gym.redaction import REDACTED
from sage_gym.scenarios import Scenario
from sage_gym.simulators.base import Message, Reaction, Rules, SimulatorError, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.client import (
    FORMAT_REJECTION,
    CallLog,
    ChatAnswer,
    ChatClient,
    ChatDeadlineError,
    ChatError,
    FormatRejection,
    LockedCounters,
    Unreadable,
    answer_text,
    display_url,
    retry_after_seconds,
)
from sage_gym.simulators.ledger import Ledger
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
__all__ = ["OpenAISimulator", "OpenAISimulatorOptions", "SimulatorStats", "forget_response_modes", "retry_after_seconds", "FORMAT_REJECTION"]

# The response mode that works for each endpoint (display base_url, model), shared by all instances.
_MODE_MEMORY: dict[tuple[str, str], str] = {}
_MODE_LOCK = threading.Lock()


def forget_response_modes() -> None:
    """Forget which response mode each endpoint takes (the next calls probe from json_schema again)."""
    with _MODE_LOCK:
        _MODE_MEMORY.clear()


@dataclass
class SimulatorStats(LockedCounters):
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
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)

    def absorb(self, log: CallLog) -> None:
        """Add what one chat call cost (requests and retries by cause)."""
        with self._lock:
            self.calls += log.requests
            self.retries += log.retries
            self.prompt_tokens += log.prompt_tokens
            self.completion_tokens += log.completion_tokens
            for cause, count in log.causes.items():
                self.retry_causes[cause] = self.retry_causes.get(cause, 0) + count

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "reactions": self.reactions,
                "calls": self.calls,
                "retries": self.retries,
                "failures": self.failures,
                "fallbacks": self.fallbacks,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "retry_causes": dict(self.retry_causes),
            }


@dataclass
class _TurnLog:
    """What one `react` cost: requests, attempts, retries, and the response mode that answered."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    mode: str = ""
    deadline: float | None = None  # time.monotonic() instant by which the turn must be done


@dataclass(frozen=True)
class OpenAISimulatorOptions:
    """How an `OpenAISimulator` asks and how hard it tries: every constructor keyword but the endpoint's
    (`model`, `base_url`, `api_key`). Checked when made; `OpenAISimulator(model=..., options=...)`
    takes one whole, and `OpenAISimulator(model=..., temperature=0.3, ...)` makes one from its keywords."""

    # sampling
    temperature: float | None = 0.7
    top_p: float | None = None
    max_tokens: int | None = 512
    seed: bool = True  # send each dialogue's seed with its requests
    # answers
    output_format: str = "auto"  # auto, or one fixed response mode (RESPONSE_MODES)
    single_call: bool = False  # one call per user turn instead of two
    prompts: PromptLibrary | str | Path | None = None  # a template library or its folder; default: the package's
    # reliability (sage_gym.simulators.client.ChatClient)
    timeout: float = 60.0
    step_timeout: float | None = 300.0
    max_retries: int = 5
    max_concurrency: int = 32
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    max_retry_after: float = 30.0
    headers: Mapping[str, str] | None = field(default=None, repr=False)  # may carry credentials: never shown
    # record and replay (sage_gym.simulators.ledger)
    ledger: str | Path | Ledger | None = None
    ledger_mode: str = "record-and-replay"

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        _check_number("timeout", self.timeout, low=0.0, strict=True)
        if self.step_timeout is not None:
            _check_number("step_timeout", self.step_timeout, low=0.0, strict=True)
        _check_number("backoff_initial", self.backoff_initial, low=0.0)
        _check_number("backoff_max", self.backoff_max, low=0.0)
        _check_number("max_retry_after", self.max_retry_after, low=0.0)
        if self.temperature is not None:
            _check_number("temperature", self.temperature, low=0.0)
        if self.top_p is not None:
            _check_number("top_p", self.top_p, low=0.0, high=1.0, strict=True)
        for name, value, low in (("max_retries", self.max_retries, 0), ("max_concurrency", self.max_concurrency, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        max_tokens = self.max_tokens
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
        # the numbers and flags as the manifest reports them, whatever type they were given in
        for name in ("timeout", "backoff_initial", "backoff_max", "max_retry_after"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.step_timeout is not None:
            object.__setattr__(self, "step_timeout", float(self.step_timeout))
        object.__setattr__(self, "seed", bool(self.seed))
        object.__setattr__(self, "single_call", bool(self.single_call))


OPTION_NAMES = frozenset(f.name for f in fields(OpenAISimulatorOptions))


def resolve_endpoint(model: str | None, base_url: str | None, api_key: str | None) -> tuple[str, str, str]:
    """(model, base_url, api_key) with the environment's fallbacks (see the module docstring); a ValueError
    when no model is named, or OpenAI's own endpoint has no key."""
    if api_key == REDACTED:  # from a redacted env.spec: the key comes from the environment instead
        api_key = None
    model = model or os.environ.get(ENV_MODEL) or ""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"OpenAISimulator needs a model name: pass model=... (simulator_kwargs={{'model': ...}}) or set {ENV_MODEL}")
    base_url = base_url or os.environ.get(ENV_BASE_URL) or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
    api_key = api_key or os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY") or ""
    if not api_key:
        if urlsplit(base_url).hostname == urlsplit(OPENAI_BASE_URL).hostname:
            raise ValueError(f"OpenAISimulator needs an API key for {OPENAI_BASE_URL}: pass api_key=... or set {ENV_API_KEY}")
        api_key = PLACEHOLDER_API_KEY
    return model.strip(), base_url.rstrip("/"), api_key


class OpenAISimulator:
    """A simulated user played by an LLM behind an OpenAI-compatible endpoint (see the module docstring).

    `OpenAISimulator(model, base_url, api_key, temperature=..., max_retries=..., ...)`: the keywords
    are the fields of `OpenAISimulatorOptions` (or pass `options=` whole); the settings in use are
    `self.options`.
    """

    kind = "openai"

    def __init__(
        self, model: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
        options: OpenAISimulatorOptions | None = None, **settings: Any,
    ) -> None:  # fmt: skip
        unknown = sorted(settings.keys() - OPTION_NAMES)
        if unknown:
            raise TypeError(f"OpenAISimulator got unknown keyword argument(s) {unknown}; see OpenAISimulatorOptions")
        options = replace(options, **settings) if options is not None else OpenAISimulatorOptions(**settings)
        self.model, self.base_url, api_key = resolve_endpoint(model, base_url, api_key)
        self.endpoint = display_url(self.base_url)  # what messages and manifests show
        self.options = options
        prompts = options.prompts
        self.prompts = prompts if isinstance(prompts, PromptLibrary) else (PromptLibrary(prompts) if prompts else default_prompts())
        self.stats = SimulatorStats()
        # every request and its answer in a SQLite file, to replay (sage_gym.simulators.ledger)
        ledger = options.ledger
        self.ledger = ledger if isinstance(ledger, Ledger) or ledger is None else Ledger(ledger, options.ledger_mode)
        # the key lives only inside the client (never printed: see __repr__, manifest, ChatClient.redact)
        self.client = ChatClient(
            self.base_url,
            api_key,
            timeout=options.timeout,
            max_retries=options.max_retries,
            max_concurrency=options.max_concurrency,
            backoff_initial=options.backoff_initial,
            backoff_max=options.backoff_max,
            max_retry_after=options.max_retry_after,
            headers=options.headers,
            ledger=self.ledger,
        )

    def __repr__(self) -> str:
        return f"OpenAISimulator(model={self.model!r}, base_url={self.endpoint!r}, output_format={self.options.output_format!r}, single_call={self.options.single_call})"

    # pickling and deepcopy carry the settings (the client drops its loop-bound connections)
    def __getstate__(self) -> dict[str, Any]:
        # the template library is rebuilt from its folder: its compiled-template cache does not pickle
        prompts = PromptLibrary(self.prompts.folder)
        options = replace(self.options, prompts=prompts) if isinstance(self.options.prompts, PromptLibrary) else self.options
        return {**self.__dict__, "stats": SimulatorStats(), "prompts": prompts, "options": options}

    # ------------------------------------------------------------------ Simulator protocol

    async def open(self, scenario: Scenario, rng: np.random.Generator, rules: Rules) -> UserState:
        # the same draw as the built-in simulator, so a seed gives the same dialogue seed with either
        return UserState(emotion=rules.initial_emotion, rules=rules, turn=0, seed=int(rng.integers(2**31 - 1)))

    async def react(self, scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str) -> Reaction:
        """The user's reaction; raises SimulatorError (state untouched) when the endpoint cannot give one."""
        rules, turn = state.rules, _TurnLog()
        visible = plain_history(history)
        turn.deadline = None if self.options.step_timeout is None else time.monotonic() + self.options.step_timeout
        try:
            if self.options.single_call:
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
                "prompt_tokens": turn.prompt_tokens,
                "completion_tokens": turn.completion_tokens,
                "output_format": turn.mode,
            },
        )

    def manifest(self) -> dict[str, Any]:
        """Everything that shapes this simulator's answers (never the API key or headers)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "base_url": self.endpoint,
            "temperature": self.options.temperature,
            "top_p": self.options.top_p,
            "max_tokens": self.options.max_tokens,
            "seed": self.options.seed,
            "timeout": self.options.timeout,
            "step_timeout": self.options.step_timeout,
            "max_retries": self.options.max_retries,
            "output_format": self.options.output_format,
            "output_format_in_use": self._mode(),
            "single_call": self.options.single_call,
            "prompts_sha256": self.prompts.sha256(),
            "http_client": f"sage_gym ChatClient (h11 {h11.__version__})",
        }

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop (others close with their loops)."""
        await self.client.aclose()

    async def __aenter__(self) -> OpenAISimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(
        self, name: str, build: Callable[[str], list[dict[str, str]]], parse: Callable[[str], T], seed: int = 0, deadline: float | None = None
    ) -> T:
        """One chat call through this endpoint's client, limits, retries and response-format fallback.

        `name` picks the JSON schema (`sage_gym.simulators.prompting.SCHEMAS`), `build(mode)` makes
        the messages and `parse(text)` reads the answer (a ParseError is retried). The scenario
        generator uses this, so every call to an LLM endpoint goes through one code path.
        `deadline` is a `time.monotonic()` instant (None: only the retry budget bounds it).
        """
        turn = _TurnLog()
        turn.deadline = deadline
        return await self._call(name, build, parse, seed, turn)

    # ------------------------------------------------------------------ one call, with retries

    async def _call(self, name: str, build: Callable[[str], list[dict[str, str]]], parse: Callable[[str], T], seed: int, turn: _TurnLog) -> T:
        """One chat call (`name` picks the schema), retried on transient failures; SimulatorError when spent."""
        mode = self._mode()

        def request() -> dict[str, Any]:
            nonlocal mode
            mode = self._mode()  # another call may have stepped the endpoint down meanwhile
            body: dict[str, Any] = {"model": self.model, "messages": build(mode)}
            for key, value in (("temperature", self.options.temperature), ("top_p", self.options.top_p), ("max_tokens", self.options.max_tokens)):
                if value is not None:
                    body[key] = value
            if self.options.seed:
                body["seed"] = seed
            if (fmt := response_format(mode, name)) is not None:
                body["response_format"] = fmt
            return body

        def read(answer: ChatAnswer) -> T:
            try:
                return parse(answer_text(answer))
            except ParseError as err:
                raise Unreadable(str(err)) from None

        def rejected(rejection: FormatRejection) -> bool:
            if self.options.output_format != "auto" or mode == RESPONSE_MODES[-1]:
                return False
            self._fall_back(mode, rejection)
            return True

        cost = CallLog()
        try:
            result = await self.client.complete(
                request, read, deadline=turn.deadline, on_format_rejected=rejected, log=cost, label=f"simulator {name} call to {self.endpoint} (model {self.model!r})"
            )
        except ChatError as err:
            message = str(err)
            if isinstance(err, ChatDeadlineError):
                message += f" (step_timeout={self.options.step_timeout:g} s)" if self.options.step_timeout is not None else ""
            elif err.cause == "format":
                message += f"; output_format={self.options.output_format!r} is fixed: use output_format='auto' or 'tagged'"
            # raised outside the except block, so no exception chain travels with the SimulatorError
        else:
            message = ""
        finally:
            self.stats.absorb(cost)
            turn.calls += cost.requests
            turn.attempts += cost.attempts
            turn.retries += cost.retries
            turn.prompt_tokens += cost.prompt_tokens
            turn.completion_tokens += cost.completion_tokens
        if message:
            raise SimulatorError(message)
        turn.mode = mode
        return result

    # ------------------------------------------------------------------ response modes

    @property
    def _endpoint_key(self) -> tuple[str, str]:
        return (self.endpoint, self.model)

    def _mode(self) -> str:
        if self.options.output_format != "auto":
            return self.options.output_format
        with _MODE_LOCK:
            return _MODE_MEMORY.get(self._endpoint_key, RESPONSE_MODES[0])

    def _fall_back(self, failed: str, rejection: FormatRejection) -> None:
        following = RESPONSE_MODES[RESPONSE_MODES.index(failed) + 1]
        with _MODE_LOCK:
            current = _MODE_MEMORY.get(self._endpoint_key, RESPONSE_MODES[0])
            if RESPONSE_MODES.index(current) < RESPONSE_MODES.index(following):  # never step back up
                _MODE_MEMORY[self._endpoint_key] = following
        self.stats.add("fallbacks")
        log.info("%s (model %s) refused response_format %s (HTTP %d: %s); using %s", self.endpoint, self.model, failed, rejection.status, self.client.redact(rejection.message), following)


# ----------------------------------------------------------------------------------------------
# helpers


def _ending(rules: Rules, emotion: int) -> str:
    """What the rules decide: "success" at the top, "failure" at the bottom, else "" (the user may still leave)."""
    if emotion >= rules.success_at:
        return "success"
    if emotion < rules.failure_below:
        return "failure"
    return ""


def _check_number(name: str, value: Any, low: float | None = None, high: float | None = None, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
