"""A local OpenAI-compatible server that plays the built-in simulated user, with fault injection.

    python -m sage_gym.servers.simulator_server --port 8011
    # then: OpenAISimulator(base_url="http://127.0.0.1:8011/v1", model="sage_gym.builtin")

It answers the prompts `OpenAISimulator` sends (see `sage_gym.simulators.prompting`) in all three
response modes (json_schema, json_object, tagged) by reading the scenario, rules, emotion,
history and agent reply back out of them and running the built-in simulator
(`sage_gym.simulators.builtin`) with the request's `seed`. So an episode through the whole HTTP
path matches the in-process `BuiltinSimulator` turn by turn. Requests it cannot read get HTTP 400
with a message that says what does not fit.

| route                       | what                                                            |
|-----------------------------|-----------------------------------------------------------------|
| `POST /v1/chat/completions` | the simulator (non-streaming chat completions)                  |
| `GET /v1/models`            | the one model it serves                                         |
| `GET /health`               | `{"status": "ok"}`                                              |
| `GET /stats`                | requests served and faults injected, by kind                    |

Faults, for testing clients and benchmarks (`FaultConfig`, or the CLI flags of the same names):
added latency; a share of requests answered 429 (with Retry-After) or 500; a share that hang
past any sensible client timeout; a share answered with malformed output (truncated at
"max_tokens", prose without fields, wrong types, or nothing); `--reject-json-schema` and
`--reject-json-object` answer 400 to those response formats, like servers without structured
output; `--api-key` demands a key and, like some real servers, echoes a wrong one in its 401.
Fault draws come from a RNG seeded with `--seed`.

`--emulate NAME` answers each response format the way a real server does (`EMULATIONS`: status
code and error body of the formats it refuses, the extra fields of its answers):
llama-cpp-python, llama-server (and its older builds), vLLM, SGLang, Ollama, LM Studio, OpenAI
(and its models without structured outputs). `FaultConfig.raw_answer` makes every chat request
get that body (any bytes) with `raw_status`, to test clients against arbitrary answers.

`run_server_in_thread(port=0, **faults)` runs it in a background thread for tests and
benchmarks and yields its base URL. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sage_gym.scenarios import Scenario
from sage_gym.servers.uvicorn_thread import uvicorn_in_thread
from sage_gym.simulators.base import Rules, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.builtin import Assessment, assess, check_language, compose_reply, ending_for, react_sync, user_turns
from sage_gym.simulators.builtin_writer import read_writer_request, write_scenario
from sage_gym.simulators.prompting import PromptMismatch, TurnRequest, hashable, read_request, render_answer

DEFAULT_MODEL = "sage_gym.builtin"
FAULT_KINDS = ("rate_429", "rate_500", "hang", "malformed")


@dataclass(frozen=True)
class Emulation:
    """How one real OpenAI-compatible server treats `response_format`, as its source and docs show.

    `refuses` maps a requested format ("json_schema", "json_object", "json_object+schema", the
    latter being json_object with a "schema" key as llama-cpp-python takes it) to the status and
    JSON body the server answers with; every other format, and no response_format at all (tagged
    text), is served. `message_extras` and `completion_extras` are the fields its answers carry
    beyond OpenAI's. docs/simulators.md has the table with the sources.
    """

    name: str
    refuses: Mapping[str, tuple[int, Any]] = field(default_factory=dict)
    message_extras: Mapping[str, Any] = field(default_factory=dict)
    completion_extras: Mapping[str, Any] = field(default_factory=dict)


# llama-cpp-python (llama_cpp/server): pydantic allows response_format.type "text" or
# "json_object" (with an optional "schema"); its RouteErrorHandler turns the request-validation
# error into HTTP 500 {"error": {"message": str(error), "type": "internal_server_error", ...}}.
_PYDANTIC_LITERAL_ERROR = (
    "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
    "'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}]"
)
_OPENAI_NO_SCHEMA_KEY = (400, {"error": {"message": "Unknown parameter: 'response_format.schema'.", "type": "invalid_request_error", "param": "response_format.schema", "code": "unknown_parameter"}})
_LM_STUDIO_REFUSAL = (400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})
EMULATIONS: dict[str, Emulation] = {
    emulation.name: emulation
    for emulation in (
        Emulation(
            "llama-cpp-python",
            refuses={"json_schema": (500, {"error": {"message": _PYDANTIC_LITERAL_ERROR, "type": "internal_server_error", "param": None, "code": None}})},
        ),
        # llama.cpp's llama-server takes json_schema and json_object (with "schema") since 2024
        Emulation("llama-server", completion_extras={"system_fingerprint": "b4000-emulated", "timings": {"predicted_n": 1}}),
        # older llama-server builds (and forks such as ik_llama.cpp) threw from the request parser: HTTP 500
        Emulation(
            "llama-server-legacy",
            refuses={"json_schema": (500, {"error": {"code": 500, "message": 'response_format type must be one of "text" or "json_object", but got: json_schema', "type": "server_error"}})},
        ),
        Emulation("vllm", message_extras={"reasoning_content": None, "tool_calls": []}, completion_extras={"prompt_logprobs": None}),
        Emulation("sglang", message_extras={"reasoning_content": None, "tool_calls": None}),
        # Ollama's /v1 maps json_object to format "json" and json_schema to the schema; it ignores "schema" in json_object
        Emulation("ollama", completion_extras={"system_fingerprint": "fp_ollama"}),
        Emulation("lm-studio", refuses={"json_object": _LM_STUDIO_REFUSAL, "json_object+schema": _LM_STUDIO_REFUSAL}),
        Emulation("openai", refuses={"json_object+schema": _OPENAI_NO_SCHEMA_KEY}, message_extras={"refusal": None, "annotations": []}),
        # OpenAI models without structured outputs (gpt-3.5-turbo, gpt-4-turbo)
        Emulation(
            "openai-legacy",
            refuses={
                "json_schema": (
                    400,
                    {
                        "error": {
                            "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                            "type": "invalid_request_error",
                            "param": "response_format",
                            "code": None,
                        }
                    },
                ),
                "json_object+schema": _OPENAI_NO_SCHEMA_KEY,
            },
            message_extras={"refusal": None},
        ),
    )
}


@dataclass
class FaultConfig:
    """What goes wrong, and how often. Mutable: a test may change it while the server runs.

    Rates are probabilities per chat request and must sum to at most 1.
    """

    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0
    retry_after: float = 0.0  # the Retry-After header of 429 answers, in seconds
    seed: int = 0
    reject_json_schema: bool = False
    reject_json_object: bool = False
    api_key: str | None = None  # if set, requests must carry it as a bearer token
    emulate: str | None = None  # answer response formats like this real server (a key of EMULATIONS)
    raw_answer: bytes | str | None = None  # answer every chat request with exactly these bytes (a str: its UTF-8) ...
    raw_status: int = 200  # ... and this status

    def __post_init__(self) -> None:
        if isinstance(self.raw_answer, str):
            self.raw_answer = self.raw_answer.encode("utf-8", "surrogateescape")
        self.validate()

    def validate(self) -> None:
        if self.emulate is not None and self.emulate not in EMULATIONS:
            raise ValueError(f"emulate must be one of {sorted(EMULATIONS)}, got {self.emulate!r}")
        if not 100 <= self.raw_status <= 599:
            raise ValueError(f"raw_status must be an HTTP status (100-599), got {self.raw_status!r}")
        rates = {"rate_429": self.rate_429, "rate_500": self.rate_500, "hang_rate": self.hang_rate, "malformed_rate": self.malformed_rate}
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"the fault rates sum to {sum(rates.values()):g}, more than 1")
        for name in ("latency_ms", "hang_seconds", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def draw(self, rng: random.Random) -> str:
        """One request's fault: one of FAULT_KINDS, or "" for none."""
        u = rng.random()
        for kind, rate in zip(FAULT_KINDS, (self.rate_429, self.rate_500, self.hang_rate, self.malformed_rate), strict=True):
            if u < rate:
                return kind
            u -= rate
        return ""


@dataclass
class ServerStats:
    requests: int = 0
    answered: int = 0
    rejected: int = 0  # 400s: unreadable requests and refused response formats
    in_flight: int = 0  # chat requests being served now
    peak_in_flight: int = 0
    response_formats: dict[str, int] = field(default_factory=dict)  # "json_schema", "json_object", "json_object+schema", "none"
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))


class BadRequest(Exception):
    """Answered with HTTP 400 (or `status`) and an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


# ----------------------------------------------------------------------------------------------
# the simulator behind the endpoint (pure: request body in, answer text out)


def answer_text(body: dict[str, Any]) -> str:
    """The built-in simulator's answer to one chat-completions request body, in the format asked for."""
    seed = body.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadRequest("this server plays the built-in simulator, which needs the request's integer 'seed' (the dialogue's seed)", "seed")
    try:  # the scenario generator's prompt: answer as a (formulaic, deterministic) scenario writer
        writer_request = read_writer_request(body.get("messages"))
    except ValueError as err:
        raise BadRequest(f"cannot read the scenario-writer request: {err}", "messages") from None
    if writer_request is not None:
        return json.dumps(write_scenario(writer_request, seed), ensure_ascii=False)
    try:
        turn = read_request(body.get("messages"))
    except PromptMismatch as err:
        raise BadRequest(f"cannot read the simulator prompts: {err}", "messages") from None
    try:
        check_language(turn.scenario)  # the built-in user speaks en and zh; it does not answer others in English
    except ValueError as err:
        raise BadRequest(str(err), "messages") from None
    mode = _answer_mode(body.get("response_format"), turn.output_format)
    if turn.kind == "emotion_update":
        return render_answer(_emotion_fields(turn, seed), mode)
    if turn.kind == "user_reply":
        return render_answer(_reply_fields(turn, seed), mode)
    reaction = react_sync(turn.scenario, UserState(emotion=turn.emotion, rules=turn.rules, seed=seed), turn.history, turn.agent_reply)
    analysis = reaction.analysis
    fields = {"meaning": analysis["meaning"], "goal": analysis["goal"], "thoughts": reaction.thoughts, "feeling": analysis["feeling"]}
    return render_answer({**fields, "change": reaction.change, "leaves": reaction.leaves, "reply": reaction.reply}, mode)


def _answer_mode(response_format: Any, prompt_format: str) -> str:
    if response_format is None:
        return "json_schema" if prompt_format == "json" else "tagged"
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_schema", "json_object", "text"):
        raise BadRequest("response_format must be an object with type 'json_schema', 'json_object' or 'text'", "response_format")
    kind = str(response_format["type"])
    if kind == "text":
        return "json_schema" if prompt_format == "json" else "tagged"
    return kind


def _assessed(turn: TurnRequest, seed: int) -> Assessment:
    """The built-in simulator's judgement of this turn's agent reply (remembered: the reply call judges it again)."""
    history = tuple((m["role"], m["content"]) for m in turn.history)
    judge = _remembered_assess if hashable(turn.scenario) else _assess  # lists in extras: not a cache key
    return judge(turn.scenario, turn.rules, turn.emotion, history, turn.agent_reply, seed)


def _assess(scenario: Scenario, rules: Rules, emotion: int, history: tuple[tuple[str, str], ...], agent_reply: str, seed: int) -> Assessment:
    messages = [{"role": role, "content": content} for role, content in history]
    return assess(scenario, rules, emotion, user_turns(messages), seed, messages, agent_reply)


_remembered_assess = functools.lru_cache(maxsize=4096)(_assess)


def _emotion_fields(turn: TurnRequest, seed: int) -> dict[str, Any]:
    judged = _assessed(turn, seed)
    return {"meaning": judged.meaning, "goal": judged.goal, "thoughts": judged.thoughts, "feeling": judged.feeling, "change": judged.change}


def _reply_fields(turn: TurnRequest, seed: int) -> dict[str, Any]:
    """The reply step, checked against the emotion-update exchange it continues."""
    index = user_turns(turn.history)
    judged = _assessed(turn, seed)
    assert turn.update is not None
    if turn.update.change != judged.change:
        raise BadRequest(f"the replayed change {turn.update.change:+d} is not the built-in simulator's {judged.change:+d} for this seed and turn", "messages")
    emotion = clamp_emotion(turn.emotion + judged.change)
    bucket = emotion_bucket(emotion)
    if turn.bucket != bucket:
        raise BadRequest(f"the reply prompt says the emotion is {turn.bucket!r}, but {turn.emotion} {judged.change:+d} = {emotion} is {bucket!r}", "messages")
    ending = ending_for(turn.rules, turn.scenario, emotion)
    told = ending if ending in ("success", "failure") else ""  # "left" is the user's own choice, not the client's
    if turn.ending != told:
        raise BadRequest(f"the reply prompt's ending is {turn.ending!r}, but at emotion {emotion} it should be {told!r}", "messages")
    reply = compose_reply(turn.scenario, bucket, ending, index, seed, turn.history, turn.agent_reply, judged.spoken, judged.change)
    return {"leaves": bool(ending), "reply": reply}


def malformed(text: str, rng: random.Random) -> tuple[str, str]:
    """A broken version of an answer, as (content, finish_reason); none of them is a valid answer."""
    kind = rng.choice(("truncated", "prose", "wrong_types", "empty"))
    if kind == "truncated":  # ran out of max_tokens mid-answer
        return text[: len(text) // 2], "length"
    if kind == "prose":
        return "I'm sorry, but I can't continue with this role-play. Is there anything else I can help you with?", "stop"
    if kind == "wrong_types":
        return json.dumps({"change": "quite a lot", "reply": "", "leaves": "perhaps"}), "stop"
    return "", "stop"


# ----------------------------------------------------------------------------------------------
# HTTP


def create_app(faults: FaultConfig | None = None, model: str = DEFAULT_MODEL) -> Starlette:
    """The Starlette app; `app.state.faults` and `app.state.stats` are live."""
    faults = faults or FaultConfig()
    stats = ServerStats()
    rng = random.Random(faults.seed)

    async def chat_completions(request: Request) -> Response:
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            return await _complete(request, faults, stats, rng, model)
        except BadRequest as err:
            if err.status == 400:
                stats.rejected += 1
            return _error(err.status, err.message, err.param)
        finally:
            stats.in_flight -= 1

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "sage_gym"}]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def server_stats(request: Request) -> JSONResponse:
        return JSONResponse(asdict(stats))

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/stats", server_stats, methods=["GET"]),
        ]
    )
    app.state.faults, app.state.stats = faults, stats
    return app


async def _complete(request: Request, faults: FaultConfig, stats: ServerStats, rng: random.Random, model: str) -> Response:
    """One chat-completions request: the built-in simulator's answer, with the faults `faults` asks for."""
    body = await _read_json(request)  # read the body first: a hang then watches the connection for the client giving up
    _check_api_key(request, faults.api_key)
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000.0)
    if faults.raw_answer is not None:
        stats.answered += 1
        raw = faults.raw_answer.encode("utf-8", "surrogateescape") if isinstance(faults.raw_answer, str) else faults.raw_answer
        return Response(raw, status_code=faults.raw_status, media_type="application/json")
    fault = faults.draw(rng)
    if fault:
        stats.faults[fault] += 1
    failure = await _injected_failure(fault, request, faults)
    if failure is not None:
        return failure
    _check_body(body)
    requested = _requested_format(body)
    stats.response_formats[requested] = stats.response_formats.get(requested, 0) + 1
    emulation = _emulation(requested, faults)
    if requested in emulation.refuses:
        status, error = emulation.refuses[requested]
        stats.rejected += 1
        return JSONResponse(error, status_code=status)
    text = answer_text(body)
    finish_reason = "stop"
    if fault == "malformed":
        text, finish_reason = malformed(text, rng)
    stats.answered += 1
    completion = _completion(body.get("model") or model, text, finish_reason, body.get("messages"))
    completion["choices"][0]["message"].update(emulation.message_extras)
    completion.update(emulation.completion_extras)
    return JSONResponse(completion)


async def _read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None


def _check_api_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if given != api_key:
        # like some real servers, echo the key: clients must keep it out of their errors
        raise BadRequest(f"Incorrect API key provided: {given}", None, status=401)


async def _injected_failure(fault: str, request: Request, faults: FaultConfig) -> Response | None:
    """The response that replaces the answer for an injected rate limit, server error or hang; None otherwise."""
    if fault == "rate_429":
        return _error(429, "Rate limit reached (injected fault)", None, headers={"Retry-After": f"{faults.retry_after:g}"})
    if fault == "rate_500":
        return _error(500, "Internal server error (injected fault)", None)
    if fault == "hang" and not await _hang(request, faults.hang_seconds):
        return JSONResponse({}, status_code=499)  # nobody is listening any more
    return None


def _check_body(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if body.get("stream"):
        raise BadRequest("streaming is not supported by this server", "stream")


def _emulation(requested: str, faults: FaultConfig) -> Emulation:
    """The server this one answers like; raises BadRequest for a response format `faults` refuses."""
    if (requested == "json_schema" and faults.reject_json_schema) or (requested.startswith("json_object") and faults.reject_json_object):
        raise BadRequest(f"response_format type {requested.split('+')[0]!r} is not supported by this server", "response_format")
    return EMULATIONS[faults.emulate] if faults.emulate else Emulation("sage_gym")


def _requested_format(body: dict[str, Any]) -> str:
    """The response_format type asked for: "json_schema", "json_object", "json_object+schema", "text" or "none"."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return "none"
    kind = str(response_format.get("type"))
    return f"{kind}+schema" if kind == "json_object" and "schema" in response_format else kind


async def _hang(request: Request, seconds: float) -> bool:
    """Sleep `seconds`, or until the client hangs up (it timed out); True if the client is still there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return False  # stop early, so hung requests do not pile up
        await asyncio.sleep(min(0.05, deadline - time.monotonic()))
    return not await request.is_disconnected()


def _completion(model: str, text: str, finish_reason: str, messages: Any) -> dict[str, Any]:
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages) if isinstance(messages, list) else 0
    completion_words = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": completion_words, "total_tokens": prompt_words + completion_words},
    }


def _error(status: int, message: str, param: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}.get(status, "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status, headers=headers)


# ----------------------------------------------------------------------------------------------
# running it


@contextmanager
def run_server_in_thread(
    port: int = 0, host: str = "127.0.0.1", *, faults: FaultConfig | None = None, model: str = DEFAULT_MODEL, **fault_options: Any
) -> Iterator[str]:
    """Serve in a background thread; yields the base URL (`http://host:port/v1`). `port=0` takes a free port.

    Fault options are `FaultConfig` fields (`rate_429=0.1, hang_rate=0.05, ...`), or pass a
    `FaultConfig` as `faults` to change it while the server runs.
    """
    if faults is not None and fault_options:
        raise ValueError("pass either faults=FaultConfig(...) or fault keyword arguments, not both")
    faults = faults or FaultConfig(**fault_options)
    make = lambda: uvicorn.Config(create_app(faults, model), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)  # noqa: E731
    with uvicorn_in_thread(make, host, port, "sage-gym-sim-server") as authority:
        yield f"http://{authority}/v1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sage_gym.servers.simulator_server",
        description="Serve the built-in simulated user on an OpenAI-compatible endpoint, with optional fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; the server has no authentication unless --api-key)")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model id /v1/models lists (requests may name any model)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per chat request")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of requests answered 429 with Retry-After")
    parser.add_argument("--rate-500", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that hang for --hang-seconds first")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long a hanging request sleeps (longer than the client timeout)")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="share of requests answered with malformed or truncated output")
    parser.add_argument("--retry-after", type=float, default=0.0, help="Retry-After seconds sent with 429 answers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--reject-json-schema", action="store_true", help="answer 400 to response_format json_schema")
    parser.add_argument("--reject-json-object", action="store_true", help="answer 400 to response_format json_object")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--emulate", default=None, choices=sorted(EMULATIONS), help="answer response formats the way this real server does")
    parser.add_argument("--raw-answer", default=None, help="answer every chat request with this text instead (to test clients)")
    parser.add_argument("--raw-status", type=int, default=200, help="the status of --raw-answer answers")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in fields(FaultConfig)}
    try:
        faults = FaultConfig(**options)
    except ValueError as err:
        build_parser().error(str(err))
    print(f"sage_gym simulator server: base_url http://{args.host}:{args.port}/v1 model {args.model}", flush=True)
    uvicorn.run(create_app(faults, args.model), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
