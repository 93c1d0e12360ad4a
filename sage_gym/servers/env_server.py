"""SageDialogue over OpenEnv's HTTP/WebSocket environment protocol: `python -m sage_gym.servers.env_server`.

    python -m sage_gym.servers.env_server --port 8000 --scenarios eval --max-turns 8
    # then, from any OpenEnv client (openenv-core's GenericEnvClient, TRL's or verl's OpenEnv hooks):
    #   async with GenericEnvClient(base_url="http://127.0.0.1:8000") as env:
    #       result = await env.reset(seed=0)
    #       result = await env.step({"message": "That sounds hard. What happened?"})

One WebSocket connection is one environment session (one `SageDialogueEnv`, any number of
episodes). Messages follow OpenEnv (`openenv-core` 0.3) without depending on it:

| client sends | server answers |
|---|---|
| `{"type": "reset", "data": {"seed": 0, "scenario_id": "..."}}` (both optional) | `{"type": "observation", "data": {"observation": {...}, "reward": null, "done": false}}` |
| `{"type": "step", "data": {"message": "..."}}` | `{"type": "observation", "data": {"observation": {...}, "reward": 0.05, "done": false}}` |
| `{"type": "state"}` | `{"type": "state", "data": {"episode_id": ..., "step_count": ..., ...}}` |
| `{"type": "close"}` | the server closes the connection |
| anything it cannot use | `{"type": "error", "data": {"message": "...", "code": "INVALID_JSON" \\| "UNKNOWN_TYPE" \\| "VALIDATION_ERROR" \\| "EXECUTION_ERROR" \\| "CAPACITY_REACHED" \\| "IDLE_TIMEOUT"}}` |

An error leaves the session and its episode as they were (a step the simulator failed can be
sent again). The observation holds the user's `message` and the step's public info (`emotion`,
`change`, `turn`, `outcome`, `scenario_id`, `history`, ...); the user's hidden thoughts are never
sent. `reward` is the env's reward (`reward_mode`), `done` is terminated or truncated.

HTTP routes: `GET /health` (no token needed), `GET /metadata`, `GET /schema` (JSON schemas built
from the env's spaces), `GET /state` (a fresh environment's state: the stateless HTTP routes
keep nothing between requests), `POST /reset` (a fresh environment's first observation, body as
the WebSocket reset's `data`) and `POST /step`, which answers 409: a dialogue has state, so it
needs a WebSocket session.

Every environment option (scenarios, simulator, rules, reward mode) is fixed when the server
starts; a session chooses only its `seed` and `scenario_id` per reset. The server binds
127.0.0.1 unless told otherwise, and refuses to bind any other address without a bearer token
(`--token`, or the `SAGE_GYM_SERVE_TOKEN` environment variable), which every route but
`/health` then requires (`Authorization: Bearer <token>`, on the WebSocket handshake too).
Started some other way (`uvicorn sage_gym.servers.env_server:app --host 0.0.0.0`), a server without a token
answers 403 to every connection that did not come in on a loopback address. Every request is
also checked for a web page's Origin (`--allowed-origins`), a rebinding Host header
(`--allowed-hosts`, without a token) and, on POST, `Content-Type: application/json` (see
`sage_gym.servers.env_access`).
`--max-sessions` bounds concurrent sessions (one more is answered `CAPACITY_REACHED` and closed)
and `--idle-timeout` closes a session that sent nothing for that long.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import uvicorn.config
from gymnasium.error import ResetNeeded
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sage_gym.env import SageDialogueEnv, package_version
from sage_gym.scenarios import resolve_scenarios
from sage_gym.servers.env_access import AccessGuard
from sage_gym.servers.uvicorn_thread import uvicorn_in_thread
from sage_gym.simulators import SimulatorError, make_simulator

TOKEN_ENV = "SAGE_GYM_SERVE_TOKEN"
ALLOWED_HOSTS_ENV = "SAGE_GYM_SERVE_ALLOWED_HOSTS"
ALLOWED_ORIGINS_ENV = "SAGE_GYM_SERVE_ALLOWED_ORIGINS"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
RESET_KEYS = {"seed", "scenario_id", "episode_id"}
# uvicorn configures this logger, so a line logged to it shows in the server's own output
log = logging.getLogger("uvicorn.error")
# the info keys a client sees; `thoughts` and `analysis` are the simulator's private reasoning
PUBLIC_INFO = ("emotion", "change", "bucket", "grade", "turn", "outcome", "scenario_id", "history", "thinking")


class ProtocolError(Exception):
    """A message the server cannot use; `code` is OpenEnv's error code."""

    def __init__(self, message: str, code: str = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ServeConfig:
    """What the server runs: the env's keyword arguments (all fixed at start-up) and its limits."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_sessions: int = 64
    idle_timeout_s: float = 600.0
    token: str | None = None
    max_message_bytes: int = 1 << 20
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback ones (without a token)
    allowed_origins: tuple[str, ...] = ()  # web page origins allowed to call (programs send no Origin)

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {self.idle_timeout_s}")


class DialogueSession:
    """One client's environment: resets and steps one `SageDialogueEnv`, answers in OpenEnv's shapes."""

    def __init__(self, make_env: Callable[[], SageDialogueEnv]) -> None:
        self.env = make_env()
        self.episode_id: str | None = None

    async def reset(self, data: Any) -> dict[str, Any]:
        data = _object(data, "reset data")
        unknown = set(data) - RESET_KEYS
        if unknown:
            raise ProtocolError(f"unknown reset options {sorted(unknown)}; expected any of {sorted(RESET_KEYS)}")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ProtocolError(f"seed must be a non-negative integer or null, got {seed!r}")
        scenario_id = data.get("scenario_id")
        if scenario_id is not None and not isinstance(scenario_id, str):
            raise ProtocolError(f"scenario_id must be a string or null, got {scenario_id!r}")
        if scenario_id is not None and scenario_id not in self.env.scenarios:
            # named by its ids only: the set's name is a file path on the server, not the client's business
            ids = self.env.scenarios.ids
            raise ProtocolError(f"unknown scenario_id {scenario_id!r}: the server's {len(ids)} scenarios are {ids[0]!r} ... {ids[-1]!r}")
        options = {"scenario_id": scenario_id} if scenario_id else None
        observation, info = await self.env.areset(seed=seed, options=options)
        self.episode_id = str(data.get("episode_id") or uuid.uuid4().hex)
        return _observation(observation, info, reward=None, done=False)

    async def step(self, data: Any) -> dict[str, Any]:
        data = _object(data, "step data")
        unknown = set(data) - {"message", "metadata"}
        if "message" not in data or unknown:
            raise ProtocolError(f'a step\'s data is {{"message": "<the agent\'s reply>"}}, got keys {sorted(data)}')
        message = data["message"]
        if not isinstance(message, str):
            raise ProtocolError(f"message must be a string, got {type(message).__name__}")
        if self.env.scenario is None:
            raise ProtocolError("no episode: send a reset before the first step", code="EXECUTION_ERROR")
        try:
            observation, reward, terminated, truncated, info = await self.env.astep(message)
        except ResetNeeded as err:
            raise ProtocolError(f"{err}", code="EXECUTION_ERROR") from err
        except ValueError as err:  # longer than max_action_chars
            raise ProtocolError(str(err)) from err
        except SimulatorError as err:
            raise ProtocolError(f"the simulator failed ({err}); the episode is unchanged, the step can be sent again", code="EXECUTION_ERROR") from err
        return _observation(observation, info, reward=reward, done=terminated or truncated)

    def state(self) -> dict[str, Any]:
        env = self.env
        return {
            "episode_id": self.episode_id,
            "step_count": 0 if env.scenario is None else len(env.history) // 2,
            "scenario_id": None if env.scenario is None else env.scenario.id,
            "emotion": env.emotion,
            "outcome": env.outcome,
            "done": env.done,
        }


def _object(data: Any, what: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{what} must be a JSON object, got {type(data).__name__}")
    return dict(data)


def _observation(message: str, info: Mapping[str, Any], *, reward: float | None, done: bool) -> dict[str, Any]:
    observation = {"message": message, **{key: info[key] for key in PUBLIC_INFO if key in info}}
    return {"observation": observation, "reward": reward, "done": bool(done)}


def env_schemas(env: SageDialogueEnv) -> dict[str, Any]:
    """JSON schemas of the action, observation and state, from the env's spaces and info."""
    text = lambda n, what: {"type": "string", "maxLength": n, "description": what}  # noqa: E731
    integer = lambda lo, hi, what: {"type": "integer", "minimum": lo, "maximum": hi, "description": what}  # noqa: E731
    nullable = lambda schema: {"anyOf": [schema, {"type": "null"}]}  # noqa: E731
    outcome = {"type": "string", "enum": ["success", "failure", "left", "truncated", "error"]}
    history = {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {"type": "string"}}}}
    return {
        "action": {
            "title": "SageDialogueAction",
            "type": "object",
            "properties": {"message": text(env.action_space.max_length, "the agent's reply (a leading <think>...</think> stays private when strip_think is on)")},
            "required": ["message"],
        },
        "observation": {
            "title": "SageDialogueObservation",
            "type": "object",
            "properties": {
                "message": text(env.observation_space.max_length, "the simulated user's latest message"),
                "emotion": integer(0, 100, "the user's emotion after this step"),
                "change": {"type": "integer", "description": "the simulator's signed change this step"},
                "bucket": {"type": "string", "enum": ["high", "medium", "low"]},
                "grade": {"type": "string", "enum": ["S", "A", "B", "C", "F"]},
                "turn": integer(0, env.max_turns, "agent replies so far"),
                "outcome": nullable(outcome),
                "scenario_id": {"type": "string"},
                "history": history,
                "thinking": {"type": "string", "description": "the agent's private thought this step"},
            },
            "required": ["message", "emotion", "turn", "outcome", "scenario_id"],
        },
        "state": {
            "title": "SageDialogueState",
            "type": "object",
            "properties": {
                "episode_id": nullable({"type": "string"}),
                "step_count": integer(0, env.max_turns, "agent replies so far"),
                "scenario_id": nullable({"type": "string"}),
                "emotion": nullable(integer(0, 100, "the user's emotion")),
                "outcome": nullable(outcome),
                "done": {"type": "boolean"},
            },
        },
    }


def create_app(config: ServeConfig | None = None) -> Starlette:
    """The Starlette app: OpenEnv's routes over `SageDialogueEnv(**config.env_kwargs)`."""
    config = config or ServeConfig()
    make_env = _env_factory(config.env_kwargs)
    probe = make_env()  # fails at start-up, not at the first session, when an option is wrong
    schemas = env_schemas(probe)
    manifest = probe.manifest()
    sessions: set[int] = set()
    app = Starlette(routes=_routes(config, make_env, sessions, schemas, manifest), lifespan=_lifespan(config))
    app.add_middleware(AccessGuard, has_token=config.token is not None, allowed_hosts=config.allowed_hosts, allowed_origins=config.allowed_origins)
    app.state.config = config
    app.state.sessions = sessions
    return app


def _routes(
    config: ServeConfig, make_env: Callable[[], SageDialogueEnv], sessions: set[int], schemas: dict[str, Any], manifest: dict[str, Any]
) -> list[Route | WebSocketRoute]:
    """OpenEnv's HTTP routes and the WebSocket session route; every route but /health behind the token."""

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        return _guarded(handler, config.token)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(_metadata(manifest, config, active_sessions=len(sessions)))

    async def schema(request: Request) -> JSONResponse:
        return JSONResponse(schemas)

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(DialogueSession(make_env).state())

    async def reset(request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(await DialogueSession(make_env).reset(body))

    async def step(request: Request) -> JSONResponse:
        return JSONResponse(
            {"detail": "a dialogue keeps state between steps: open a WebSocket session at /ws (one environment per connection); the stateless POST /step has no episode to step", "code": "EXECUTION_ERROR"},
            status_code=409,
        )

    async def websocket(ws: WebSocket) -> None:
        await _websocket_session(ws, config, sessions, make_env)

    return [
        Route("/health", health, methods=["GET"]),  # open: load balancers probe it without a token
        Route("/metadata", guarded(metadata), methods=["GET"]),
        Route("/schema", guarded(schema), methods=["GET"]),
        Route("/state", guarded(state), methods=["GET"]),
        Route("/reset", guarded(reset), methods=["POST"]),
        Route("/step", guarded(step), methods=["POST"]),
        WebSocketRoute("/ws", websocket),
    ]


def _metadata(manifest: dict[str, Any], config: ServeConfig, active_sessions: int) -> dict[str, Any]:
    return {
        "name": "SageDialogue-v0",
        "description": "Talk with a simulated user whose emotion (0-100) moves after every reply; the reward is its change.",
        "version": package_version(),
        "author": "sage-gym",
        "documentation_url": None,
        "readme_content": None,
        "manifest": manifest,
        "max_sessions": config.max_sessions,
        "active_sessions": active_sessions,
    }


def _lifespan(config: ServeConfig) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Says at start-up who will be served."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if config.token is None:
            log.info("sage_gym env server: no token, so only connections to a loopback address are served (others get 403); set %s to serve other addresses", TOKEN_ENV)
        else:
            log.info("sage_gym env server: every route but /health needs the bearer token")
        yield

    return lifespan


def _env_factory(env_kwargs: Mapping[str, Any]) -> Callable[[], SageDialogueEnv]:
    """A maker of fresh envs that share one scenario set and one simulator (one connection pool)."""
    shared = dict(env_kwargs)
    shared["scenarios"] = resolve_scenarios(shared.get("scenarios", "train"))
    shared["simulator"] = make_simulator(shared.get("simulator", "builtin"), **shared.pop("simulator_kwargs", None) or {})

    def make_env() -> SageDialogueEnv:
        return SageDialogueEnv(**shared)

    return make_env


def _authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """True without a token; else when the request carries `Authorization: Bearer <token>`."""
    if token is None:
        return True
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _guarded(handler: Callable[[Request], Any], token: str | None) -> Callable[[Request], Any]:
    """`handler` behind the bearer token (401 without it), its ProtocolErrors answered with 422."""

    async def route(request: Request) -> JSONResponse:
        if not _authorized(request.headers, token):
            return JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"}, status_code=401)
        try:
            return await handler(request)
        except ProtocolError as err:
            return JSONResponse({"detail": str(err), "code": err.code}, status_code=422)

    return route


async def _websocket_session(ws: WebSocket, config: ServeConfig, sessions: set[int], make_env: Callable[[], SageDialogueEnv]) -> None:
    """One WebSocket connection: one env for its lifetime, within the session limit."""
    if not _authorized(ws.headers, config.token):
        await ws.close(code=1008, reason="missing or wrong bearer token")
        return
    await ws.accept()
    try:
        if len(sessions) >= config.max_sessions:
            await _send_error(ws, f"the server is at its session limit ({config.max_sessions}); retry later", "CAPACITY_REACHED")
            await ws.close(code=1013)
            return
        key = id(ws)
        sessions.add(key)
        try:
            await _serve_session(ws, session=DialogueSession(make_env), idle_timeout_s=config.idle_timeout_s)
        finally:
            sessions.discard(key)
    except WebSocketDisconnect:
        pass  # the client left while the server answered or closed: nothing to tell it, nothing to log


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"the body is not JSON: {err}", code="INVALID_JSON") from err


def _error(message: str, code: str) -> dict[str, Any]:
    return {"type": "error", "data": {"message": message, "code": code}}


async def _send_error(ws: WebSocket, message: str, code: str) -> None:
    await ws.send_text(json.dumps(_error(message, code)))


async def _serve_session(ws: WebSocket, session: DialogueSession, idle_timeout_s: float) -> None:
    """Answer one client's messages until it closes, goes idle or sends a binary frame.

    A send to a client that has gone raises WebSocketDisconnect, which the caller takes as the end."""
    while True:
        try:
            frame = await asyncio.wait_for(ws.receive(), timeout=idle_timeout_s)
        except asyncio.TimeoutError:
            await _send_error(ws, f"no message for {idle_timeout_s:g} s: the session is closed", "IDLE_TIMEOUT")
            await ws.close(code=1001)
            return
        if frame["type"] == "websocket.disconnect":
            return
        raw = frame.get("text")
        if raw is None:  # 1003: unsupported data
            await ws.close(code=1003, reason="binary frames are not supported: send each message as JSON text")
            return
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as err:
            await _send_error(ws, f"Invalid JSON: {err}", "INVALID_JSON")
            continue
        if isinstance(message, dict) and message.get("type") == "close":
            await ws.close(code=1000)
            return
        try:
            reply = await _answer(session, message)
        except ProtocolError as err:
            reply = _error(str(err), err.code)
        except Exception as err:  # a bug or a broken simulator: tell the client, keep the session
            reply = _error(f"{type(err).__name__}: {err}", "EXECUTION_ERROR")
        await ws.send_text(json.dumps(reply))


async def _answer(session: DialogueSession, message: Any) -> dict[str, Any]:
    """The reply to one decoded message other than `close`."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a message is a JSON object with a 'type', got {type(message).__name__}")
    kind = message.get("type")
    if kind == "reset":
        return {"type": "observation", "data": await session.reset(message.get("data"))}
    if kind == "step":
        return {"type": "observation", "data": await session.step(message.get("data"))}
    if kind == "state":
        return {"type": "state", "data": session.state()}
    raise ProtocolError(f"Unknown message type: {kind!r}; expected 'reset', 'step', 'state' or 'close'", code="UNKNOWN_TYPE")


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if host not in LOOPBACK and not token:
        raise ValueError(f"binding {host!r} exposes the server beyond this machine: set a bearer token with --token or {TOKEN_ENV}")


def _uvicorn_config(app: Starlette, config: ServeConfig, **kwargs: Any) -> uvicorn.Config:
    # the websockets package, explicitly: without it uvicorn answers every upgrade with 404
    ws = "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "websockets"
    return uvicorn.Config(app, ws=ws, ws_max_size=config.max_message_bytes, timeout_graceful_shutdown=1, **kwargs)


@contextmanager
def serve_in_thread(config: ServeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread; yields the base URL (`http://host:port`). `port=0` takes a free port."""
    config = config or ServeConfig()
    check_binding(host, config.token)
    make = lambda: _uvicorn_config(create_app(config), config, log_level="warning", access_log=False, lifespan="off")  # noqa: E731
    with uvicorn_in_thread(make, host, port, "sage-gym-serve") as authority:
        yield f"http://{authority}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sage_gym.servers.env_server", description="Serve SageDialogue over OpenEnv's HTTP/WebSocket protocol.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs a token)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default=None, help=f"require this bearer token (default: ${TOKEN_ENV} if set)")
    parser.add_argument("--max-sessions", type=int, default=64, help="concurrent WebSocket sessions (default 64)")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="close a session idle this many seconds (default 600)")
    parser.add_argument("--allowed-hosts", default=None, help=f"comma-separated Host names served besides loopback ones when there is no token, e.g. a reverse proxy's (default: ${ALLOWED_HOSTS_ENV})")
    parser.add_argument("--allowed-origins", default=None, help=f"comma-separated web page origins allowed to call, e.g. http://localhost:3000; requests without an Origin (programs) always pass (default: ${ALLOWED_ORIGINS_ENV})")
    env = parser.add_argument_group("environment (fixed for every session)")
    env.add_argument("--scenarios", default="train", help="split name (train, eval) or a JSONL path (default train)")
    env.add_argument("--simulator", default="builtin", choices=["builtin", "openai"])
    env.add_argument("--simulator-kwargs", default="{}", help='JSON keyword arguments of the simulator, e.g. \'{"base_url": "http://127.0.0.1:8011/v1", "model": "m"}\'')
    env.add_argument("--reward-mode", default="delta", choices=["delta", "final"])
    env.add_argument("--initial-emotion", type=int, default=40)
    env.add_argument("--change-clip", type=int, nargs=2, default=(-10, 10), metavar=("LOW", "HIGH"))
    env.add_argument("--max-turns", type=int, default=10)
    env.add_argument("--success-at", type=int, default=100)
    env.add_argument("--failure-below", type=int, default=10)
    env.add_argument("--no-strip-think", action="store_true", help="send a leading <think>...</think> to the user too")
    env.add_argument("--max-action-chars", type=int, default=8000)
    env.add_argument("--max-observation-chars", type=int, default=8000)
    env.add_argument("--transcript-path", default=None, help="append every finished episode to this JSONL file")
    env.add_argument("--prompts", default=None, help="a directory of prompt templates (default: the packaged ones)")
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    try:
        simulator_kwargs = json.loads(args.simulator_kwargs)
    except json.JSONDecodeError as err:
        raise ValueError(f"--simulator-kwargs is not JSON: {err}") from err
    if not isinstance(simulator_kwargs, dict):
        raise ValueError("--simulator-kwargs must be a JSON object")
    env_kwargs: dict[str, Any] = {
        "scenarios": args.scenarios,
        "simulator": args.simulator,
        "simulator_kwargs": simulator_kwargs,
        "reward_mode": args.reward_mode,
        "initial_emotion": args.initial_emotion,
        "change_clip": tuple(args.change_clip),
        "max_turns": args.max_turns,
        "success_at": args.success_at,
        "failure_below": args.failure_below,
        "strip_think": not args.no_strip_think,
        "max_action_chars": args.max_action_chars,
        "max_observation_chars": args.max_observation_chars,
        "transcript_path": Path(args.transcript_path) if args.transcript_path else None,
        "prompts": args.prompts,
    }
    return ServeConfig(
        env_kwargs=env_kwargs,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        allowed_hosts=_comma_list(args.allowed_hosts, ALLOWED_HOSTS_ENV),
        allowed_origins=_comma_list(args.allowed_origins, ALLOWED_ORIGINS_ENV),
    )


def _comma_list(value: str | None, env_var: str) -> tuple[str, ...]:
    value = value if value is not None else os.environ.get(env_var, "")
    return tuple(item.strip() for item in value.split(",") if item.strip())


def __getattr__(name: str) -> Any:
    # `uvicorn sage_gym.servers.env_server:app` (and openenv.yaml's `app`): the server with every default,
    # built on first access so that importing this module stays cheap
    if name == "app":
        return create_app(config_from_args(build_parser().parse_args([])))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_binding(args.host, config.token)
        app = create_app(config)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"sage_gym env server: http://{args.host}:{args.port} (WebSocket /ws, {config.max_sessions} sessions)", flush=True)
    uvicorn.Server(_uvicorn_config(app, config, host=args.host, port=args.port, log_level="info")).run()


if __name__ == "__main__":
    main()
