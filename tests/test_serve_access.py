"""Who the environment server serves: loopback only without a token (however it was started), no
foreign web page (Origin), no rebinding Host, JSON-only POSTs; programs and OpenEnv clients unaffected."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from starlette.testclient import TestClient, WebSocketDenialResponse

from sage_gym.servers.env_server import ServeConfig, build_parser, config_from_args, create_app, serve_in_thread
from tests.test_serve import ENV_KWARGS, call, ws_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app():
    return create_app(ServeConfig(env_kwargs=dict(ENV_KWARGS)))


# TestClient puts its base URL's host in the ASGI scope's server address, as uvicorn puts the
# address a connection came in on; "testserver" (its default) is no loopback address either
@pytest.mark.parametrize("base_url", ["http://0.0.0.0:8000", "http://[::]:8000", "http://192.0.2.7:8000", "http://[fd00::2]:8000", "http://testserver"])
def test_without_a_token_other_addresses_than_loopback_get_403(app, base_url):
    client = TestClient(app, base_url=base_url)
    for path in ("/health", "/metadata"):
        refused = client.get(path)
        assert refused.status_code == 403 and "SAGE_GYM_SERVE_TOKEN" in refused.json()["detail"]
    assert client.post("/reset", json={"seed": 0}).status_code == 403
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(ws_url(base_url)):
            pass
    assert denied.value.status_code == 403


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "http://127.0.0.2:8000", "http://[::1]:8000"])
def test_without_a_token_loopback_addresses_are_served(app, base_url):
    client = TestClient(app, base_url=base_url)
    assert client.get("/metadata").json()["name"] == "SageDialogue-v0"
    with client.websocket_connect(ws_url(base_url)) as ws:
        ws.send_text(json.dumps({"type": "reset", "data": {"seed": 0}}))
        assert json.loads(ws.receive_text())["type"] == "observation"


def test_with_a_token_any_address_and_host_is_served_to_its_holder():
    client = TestClient(create_app(ServeConfig(env_kwargs=dict(ENV_KWARGS), token="s3cret")), base_url="http://0.0.0.0:8000")
    assert client.get("/metadata").status_code == 401
    assert client.get("/metadata", headers={"Authorization": "Bearer s3cret", "Host": "env.my-cluster.svc:8000"}).status_code == 200


def outward_address() -> str | None:
    """This machine's address on the interface toward other hosts (a UDP connect sends nothing), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_uvicorn_app_on_all_interfaces_without_a_token_serves_loopback_only():
    """`uvicorn sage_gym.servers.env_server:app --host 0.0.0.0`, as OpenEnv's launchers start it, with no token set."""
    env = {key: value for key, value in os.environ.items() if key != "SAGE_GYM_SERVE_TOKEN"}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "sage_gym.servers.env_server:app", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        log = []
        for line in server.stderr:  # uvicorn logs to stderr; its last start-up line names the port
            log.append(line)
            if "Uvicorn running on" in line:
                break
        assert server.poll() is None, "".join(log)
        port = int(log[-1].split("http://0.0.0.0:")[1].split()[0])
        assert any("no token" in line and "loopback" in line and "403" in line for line in log), "".join(log)
        assert httpx.get(f"http://127.0.0.1:{port}/metadata").status_code == 200
        address = outward_address()
        if address is None:
            pytest.skip("no non-loopback interface to connect through")
        refused = httpx.get(f"http://{address}:{port}/metadata")
        assert refused.status_code == 403 and "token" in refused.json()["detail"]

        async def websocket():
            with pytest.raises(InvalidStatus) as denied:
                async with websockets.connect(f"ws://{address}:{port}/ws"):
                    pass
            return denied.value.response.status_code

        assert asyncio.run(websocket()) == 403
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(ServeConfig(env_kwargs=dict(ENV_KWARGS))) as base:
        yield base


def test_a_foreign_web_page_is_refused_on_websocket_and_http(server):
    async def sessions():
        with pytest.raises(InvalidStatus) as denied:
            async with websockets.connect(ws_url(server), origin="http://evil.example"):
                pass
        async with websockets.connect(ws_url(server)) as ws:  # a program: no Origin
            program = await call(ws, {"type": "reset", "data": {"seed": 0}})
        return denied.value.response.status_code, program

    status, program = asyncio.run(sessions())
    assert status == 403 and program["type"] == "observation"
    with httpx.Client(base_url=server) as http:
        # what a cross-site form or fetch(..., {mode: "no-cors"}) sends: no preflight, so no chance to refuse it later
        cross_site = http.post("/reset", content='{"seed": 0}', headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert cross_site.status_code == 403 and "evil.example" in cross_site.json()["detail"]
        assert http.get("/metadata", headers={"Origin": "http://evil.example"}).status_code == 403
        assert http.get("/metadata").status_code == 200


def test_posts_must_be_json(server):
    with httpx.Client(base_url=server) as http:
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
            refused = http.post("/reset", content='{"seed": 0}', headers=headers)
            assert refused.status_code == 415 and "application/json" in refused.json()["detail"]
        assert http.post("/reset", content='{"seed": 0}', headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
        assert http.post("/reset", json={"seed": 0}).status_code == 200


def test_a_rebinding_host_is_refused(server):
    port = int(server.rsplit(":", 1)[1])
    with httpx.Client(base_url=server) as http:
        rebound = http.get("/metadata", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403 and "evil.example" in rebound.json()["detail"]
        assert http.post("/reset", json={"seed": 0}, headers={"Host": f"evil.example:{port}"}).status_code == 403
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert http.get("/metadata", headers={"Host": host}).status_code == 200, host

    async def rebound_websocket():
        # the browser's view after DNS rebinding: the page's domain, connected to 127.0.0.1
        with pytest.raises(InvalidStatus) as denied:
            async with websockets.connect(f"ws://evil.example:{port}/ws", host="127.0.0.1", port=port):
                pass
        return denied.value.response.status_code

    assert asyncio.run(rebound_websocket()) == 403


def test_allow_lists_admit_the_named_origins_and_hosts(monkeypatch):
    monkeypatch.setenv("SAGE_GYM_SERVE_ALLOWED_ORIGINS", "http://localhost:3000, https://lab.example")
    config = config_from_args(build_parser().parse_args(["--scenarios", "eval", "--allowed-hosts", "env.internal"]))
    assert config.allowed_origins == ("http://localhost:3000", "https://lab.example") and config.allowed_hosts == ("env.internal",)

    async def session(base):
        async with websockets.connect(ws_url(base), origin="http://localhost:3000") as ws:
            return await call(ws, {"type": "reset", "data": {"seed": 0}})

    with serve_in_thread(config) as base:
        assert asyncio.run(session(base))["type"] == "observation"
        port = int(base.rsplit(":", 1)[1])
        with httpx.Client(base_url=base) as http:
            assert http.get("/metadata", headers={"Origin": "https://lab.example"}).status_code == 200
            assert http.get("/metadata", headers={"Origin": "https://other.example"}).status_code == 403
            assert http.get("/metadata", headers={"Host": f"env.internal:{port}"}).status_code == 200
            assert http.get("/metadata", headers={"Host": f"other.internal:{port}"}).status_code == 403
