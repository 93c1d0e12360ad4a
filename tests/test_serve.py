"""`python -m sage_gym.servers.env_server`: OpenEnv's protocol over HTTP and WebSocket, with a plain websocket client.

Sessions played over the wire must match the same dialogues played in process, turn by turn."""

import asyncio
import json
import logging
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from agents.replies.baselines import make_reference_agent
from sage_gym.env import SageDialogueEnv
from sage_gym.servers.env_server import ServeConfig, build_parser, check_binding, config_from_args, main, serve_in_thread

ENV_KWARGS = {"scenarios": "eval", "max_turns": 6}


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


async def call(ws, message) -> dict:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await ws.recv())


async def play_remote(base: str, seed: int, scenario_id: str | None = None) -> list[tuple[int, float, bool]]:
    """One dialogue over the WebSocket with the empathic reference agent: (emotion, reward, done) per step."""
    agent = make_reference_agent("empathic", seed=seed)
    async with websockets.connect(ws_url(base)) as ws:
        data = {"seed": seed} | ({"scenario_id": scenario_id} if scenario_id else {})
        answer = await call(ws, {"type": "reset", "data": data})
        assert answer["type"] == "observation", answer
        trace, done = [], False
        while not done:
            reply = agent(answer["data"]["observation"]["history"])
            answer = await call(ws, {"type": "step", "data": {"message": reply}})
            assert answer["type"] == "observation", answer
            done = answer["data"]["done"]
            trace.append((answer["data"]["observation"]["emotion"], answer["data"]["reward"], done))
        state = await call(ws, {"type": "state"})
        assert state["type"] == "state" and state["data"]["done"] and state["data"]["step_count"] == len(trace)
        await ws.send(json.dumps({"type": "close"}))
    return trace


def play_local(seed: int, scenario_id: str | None = None) -> list[tuple[int, float, bool]]:
    agent = make_reference_agent("empathic", seed=seed)
    env = SageDialogueEnv(**ENV_KWARGS)
    _, info = env.reset(seed=seed, options={"scenario_id": scenario_id} if scenario_id else None)
    trace, done = [], False
    while not done:
        _, reward, terminated, truncated, info = env.step(agent(info["history"]))
        done = terminated or truncated
        trace.append((info["emotion"], reward, done))
    return trace


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(ServeConfig(env_kwargs=dict(ENV_KWARGS), max_sessions=16)) as base:
        yield base


def test_eight_concurrent_sessions_match_the_in_process_env(server):
    async def all_sessions():
        return await asyncio.gather(*(play_remote(server, seed) for seed in range(8)))

    remote = asyncio.run(all_sessions())
    assert remote == [play_local(seed) for seed in range(8)]
    assert any(emotion != 40 for trace in remote for emotion, _, _ in trace)


def test_reset_options_choose_the_scenario(server):
    scenario_id = SageDialogueEnv(**ENV_KWARGS).scenarios.ids[3]
    assert asyncio.run(play_remote(server, 5, scenario_id)) == play_local(5, scenario_id)


def test_http_routes(server):
    with httpx.Client(base_url=server) as http:
        assert http.get("/health").json() == {"status": "healthy"}
        meta = http.get("/metadata").json()
        assert meta["name"] == "SageDialogue-v0" and meta["manifest"]["rules"]["max_turns"] == 6
        schema = http.get("/schema").json()
        assert schema["action"]["required"] == ["message"] and schema["action"]["properties"]["message"]["maxLength"] == 8000
        assert {"message", "emotion", "outcome"} <= set(schema["observation"]["properties"]) and "state" in schema
        assert http.get("/state").json()["episode_id"] is None
        first = http.post("/reset", json={"seed": 2}).json()
        env = SageDialogueEnv(**ENV_KWARGS)
        observation, info = env.reset(seed=2)
        assert first["observation"]["message"] == observation and first["done"] is False and first["reward"] is None
        assert "thoughts" not in first["observation"]
        step = http.post("/step", json={"action": {"message": "hi"}})
        assert step.status_code == 409 and "/ws" in step.json()["detail"]
        bad = http.post("/reset", json={"seed": "x"})
        assert bad.status_code == 422 and "seed" in bad.json()["detail"]


def test_bad_messages_get_clear_errors_and_the_session_goes_on(server):
    async def session():
        async with websockets.connect(ws_url(server)) as ws:
            errors = [
                await call(ws, "{not json"),
                await call(ws, {"type": "dance"}),
                await call(ws, {"type": "step", "data": {"message": "hello"}}),
                await call(ws, {"type": "reset", "data": {"seed": 0, "color": "red"}}),
                await call(ws, {"type": "reset", "data": {"scenario_id": "no-such-scenario"}}),
                await call(ws, [1, 2]),
            ]
            ok = await call(ws, {"type": "reset", "data": {"seed": 0}})
            errors += [
                await call(ws, {"type": "step", "data": {"text": "hello"}}),
                await call(ws, {"type": "step", "data": {"message": 5}}),
                await call(ws, {"type": "step", "data": {"message": "x" * 8001}}),
            ]
            step = await call(ws, {"type": "step", "data": {"message": "That sounds hard. What happened?"}})
            return errors, ok, step

    errors, ok, step = asyncio.run(session())
    assert all(e["type"] == "error" for e in errors), errors
    codes = [e["data"]["code"] for e in errors]
    assert codes == ["INVALID_JSON", "UNKNOWN_TYPE", "EXECUTION_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR", "VALIDATION_ERROR"]
    messages = [e["data"]["message"] for e in errors]
    assert "reset" in messages[2] and "color" in messages[3] and "no-such-scenario" in messages[4] and "max_action_chars" in messages[8]
    assert ok["type"] == "observation" and step["type"] == "observation" and step["data"]["observation"]["turn"] == 1


def test_session_limit_and_idle_timeout():
    async def sessions(base):
        async with websockets.connect(ws_url(base)) as first:
            assert (await call(first, {"type": "reset", "data": {"seed": 0}}))["type"] == "observation"
            async with websockets.connect(ws_url(base)) as second:
                refused = json.loads(await second.recv())
            await asyncio.sleep(0.6)  # past the idle timeout
            idle = json.loads(await first.recv())
        return refused, idle

    with serve_in_thread(ServeConfig(env_kwargs=dict(ENV_KWARGS), max_sessions=1, idle_timeout_s=0.3)) as base:
        refused, idle = asyncio.run(sessions(base))
    assert refused["data"]["code"] == "CAPACITY_REACHED" and "1" in refused["data"]["message"]
    assert idle["data"]["code"] == "IDLE_TIMEOUT"


def test_token_is_required_off_loopback_and_checked_everywhere():
    with pytest.raises(ValueError, match="token"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "s3cret")
    with pytest.raises(SystemExit):
        main(["--host", "0.0.0.0"])

    async def sessions(base):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url(base)):
                pass
        async with websockets.connect(ws_url(base), additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            return await call(ws, {"type": "reset", "data": {"seed": 1}})

    with serve_in_thread(ServeConfig(env_kwargs=dict(ENV_KWARGS), token="s3cret")) as base:
        with httpx.Client(base_url=base) as http:
            assert http.get("/health").status_code == 200
            assert http.get("/schema").status_code == 401
            assert http.get("/schema", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert http.get("/schema", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert asyncio.run(sessions(base))["type"] == "observation"


def test_cli_sets_every_env_option():
    args = build_parser().parse_args(
        ["--scenarios", "eval", "--max-turns", "4", "--reward-mode", "final", "--initial-emotion", "30", "--change-clip", "-5", "5", "--no-strip-think", "--max-sessions", "3"]
    )
    config = config_from_args(args)
    assert config.max_sessions == 3
    env = SageDialogueEnv(**config.env_kwargs)
    manifest = env.manifest()
    assert manifest["rules"] == {"initial_emotion": 30, "change_clip": [-5, 5], "success_at": 100, "failure_below": 10, "max_turns": 4}
    assert manifest["reward_mode"] == "final" and manifest["strip_think"] is False and "eval" in manifest["scenarios"]["name"]
    with pytest.raises(SystemExit):
        main(["--simulator-kwargs", "[1]"])
    import sage_gym.servers.env_server as serve

    assert serve.app.state.config.max_sessions == 64  # what `uvicorn sage_gym.servers.env_server:app` and openenv.yaml load


def test_clients_closing_leave_no_error_in_the_server_log(server, caplog):
    """A client that says close and goes, one that just goes, one that goes before its answer: no traceback."""

    async def sessions():
        async with websockets.connect(ws_url(server)) as ws:
            await call(ws, {"type": "reset", "data": {"seed": 0}})
            await ws.send(json.dumps({"type": "close"}))
        async with websockets.connect(ws_url(server)) as ws:
            await call(ws, {"type": "reset", "data": {"seed": 0}})
        async with websockets.connect(ws_url(server)) as ws:
            await call(ws, {"type": "reset", "data": {"seed": 0}})
            await ws.send(json.dumps({"type": "step", "data": {"message": "That sounds hard. What happened?"}}))

    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's logger does not propagate to the root
    uvicorn_log.addHandler(caplog.handler)
    try:
        asyncio.run(sessions())
        with httpx.Client(base_url=server) as http:  # wait until every session has ended on the server's side
            deadline = time.monotonic() + 30
            while http.get("/metadata").json()["active_sessions"] and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    alarming = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING or record.exc_info]
    assert alarming == []


def test_a_binary_frame_gets_a_close_frame_with_a_reason(server):
    async def session():
        async with websockets.connect(ws_url(server)) as ws:
            await ws.send(b"\x00\x01")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    code, reason = asyncio.run(session())
    assert code == 1003 and "binary" in reason


def test_an_unknown_scenario_id_does_not_show_the_server_s_files(server):
    async def session():
        async with websockets.connect(ws_url(server)) as ws:
            return await call(ws, {"type": "reset", "data": {"scenario_id": "eval-999"}})

    messages = [asyncio.run(session())["data"]["message"]]
    with httpx.Client(base_url=server) as http:
        messages.append(http.post("/reset", json={"scenario_id": "eval-999"}).json()["detail"])
    for message in messages:
        assert "eval-999" in message, message
        assert not any(leak in message for leak in ("/", "\\", "site-packages", ".jsonl")), message
