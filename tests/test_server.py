"""The local OpenAI-compatible server: it reads the simulator's prompts back, answers as the built-in
simulator, rejects what it cannot read with a clear 400, and injects the faults it is asked for."""

import json
import random
import socket
import subprocess
import sys
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sage_gym.prompts import default_prompts
from sage_gym.scenarios import load_split
from sage_gym.simulators.base import Rules, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.builtin import react_sync
from sage_gym.simulators.parsing import EmotionUpdate, ParseError, parse_emotion_update, parse_user_reply
from sage_gym.simulators.prompting import (
    AGENT_REPLY_LABEL,
    PromptMismatch,
    emotion_update_messages,
    read_request,
    single_call_messages,
    user_reply_messages,
)
from sage_gym.servers.simulator_server import FaultConfig, answer_text, build_parser, malformed, run_server_in_thread
from tests.conftest import make_scenario

PROMPTS = default_prompts()
RULES = Rules(initial_emotion=30, change_clip=(-8, 6), success_at=90, failure_below=15)
HISTORY = [
    {"role": "user", "content": "So that's it, the bakery's done."},
    {"role": "assistant", "content": "That sounds awful. What happened?"},
    {"role": "user", "content": "The landlord told me by text."},
]
REPLY = "It sounds like the text message made it even harder. What was going through your mind?"


def _root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def _body(messages, seed=7, **extra):
    return {"model": "m", "messages": messages, "seed": seed, **extra}


# ----------------------------------------------------------------------------------------------
# the prompts read back


# any text the dialogue may hold, including text that imitates a prompt label or breaks lines
_dialogue_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from([AGENT_REPLY_LABEL, "Your current emotion (0 to 100):\n99", "line\u2028break\x85next", "```json\n{}\n```", "## Step 2 of 2"]),
)


@given(_dialogue_text, st.lists(_dialogue_text, max_size=4), st.integers(0, 100), st.sampled_from(["json_schema", "tagged"]))
def test_read_request_inverts_the_builders(agent_reply, lines, emotion, mode):
    scenario = make_scenario(first_message=lines[0] if lines and lines[0].strip() else "hello")
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(lines)]
    for build, kind in ((emotion_update_messages, "emotion_update"), (single_call_messages, "single_call")):
        request = read_request(build(PROMPTS, scenario, RULES, emotion, history, agent_reply, mode))
        assert (request.kind, request.scenario, request.rules, request.emotion) == (kind, scenario, RULES, emotion)
        assert (request.history, request.agent_reply) == (history, agent_reply)
        assert request.output_format == ("tagged" if mode == "tagged" else "json")
    update = EmotionUpdate(change=-5, thoughts=agent_reply, meaning="m", goal="not met", feeling="f")
    messages = user_reply_messages(PROMPTS, scenario, RULES, emotion, history, agent_reply, update, "low", "failure", mode)
    request = read_request(messages)
    assert (request.kind, request.bucket, request.ending, request.update.change) == ("user_reply", "low", "failure", -5)
    assert (request.history, request.agent_reply, request.rules) == (history, agent_reply, RULES)


def test_read_request_names_what_does_not_fit():
    scenario = make_scenario()
    messages = emotion_update_messages(PROMPTS, scenario, RULES, 30, HISTORY, REPLY, "json_schema")
    with pytest.raises(PromptMismatch, match="system"):
        read_request(messages[1:])
    with pytest.raises(PromptMismatch, match="non-empty list"):
        read_request([])
    broken = [messages[0], {"role": "user", "content": messages[1]["content"].replace(AGENT_REPLY_LABEL, "The reply:")}]
    with pytest.raises(PromptMismatch, match="agent's reply"):
        read_request(broken)
    tampered = [{"role": "system", "content": messages[0]["content"].replace('"character_type": "negative"', '"character_type": "grumpy"')}, messages[1]]
    with pytest.raises(PromptMismatch, match="character_type"):
        read_request(tampered)


def test_answer_text_is_the_builtin_simulator():
    scenario = load_split("eval")[0]
    history = [{"role": "user", "content": scenario.first_message}]
    state = UserState(emotion=40, rules=Rules(), seed=123)
    expected = react_sync(scenario, state, history, REPLY)
    for mode in ("json_schema", "tagged"):
        update = parse_emotion_update(answer_text(_body(emotion_update_messages(PROMPTS, scenario, Rules(), 40, history, REPLY, mode), seed=123)), (-10, 10))
        assert (update.change, update.thoughts) == (expected.change, expected.thoughts)
        emotion = clamp_emotion(40 + update.change)
        messages = user_reply_messages(PROMPTS, scenario, Rules(), 40, history, REPLY, update, emotion_bucket(emotion), "", mode)
        reply = parse_user_reply(answer_text(_body(messages, seed=123)))
        assert (reply.reply, reply.leaves) == (expected.reply, expected.leaves)


def test_malformed_answers_are_never_valid():
    good = json.dumps({"meaning": "m", "goal": "met", "thoughts": "t", "feeling": "f", "change": 5, "reply": "Okay.", "leaves": False})
    rng = random.Random(0)
    for _ in range(50):
        text, finish_reason = malformed(good, rng)
        if finish_reason == "length":
            continue  # the client rejects answers cut off at max_tokens whatever they hold
        for parse in (lambda t: parse_emotion_update(t, (-10, 10)), parse_user_reply):
            with pytest.raises(ParseError):
                parse(text)


def test_fault_config_validates_and_the_cli_maps_onto_it():
    with pytest.raises(ValueError, match="sum"):
        FaultConfig(rate_429=0.6, rate_500=0.6)
    with pytest.raises(ValueError, match="hang_rate"):
        FaultConfig(hang_rate=1.5)
    args = build_parser().parse_args(
        ["--latency-ms", "5", "--rate-429", "0.1", "--rate-500", "0.1", "--hang-rate", "0.05", "--malformed-rate", "0.05",
         "--seed", "3", "--reject-json-schema", "--retry-after", "1"]
    )
    assert args.host == "127.0.0.1"
    config = FaultConfig(**{name: getattr(args, name) for name in FaultConfig.__dataclass_fields__})
    assert (config.rate_429, config.hang_rate, config.seed, config.reject_json_schema, config.reject_json_object) == (0.1, 0.05, 3, True, False)


# ----------------------------------------------------------------------------------------------
# over HTTP


@pytest.fixture(scope="module")
def server_url():
    with run_server_in_thread() as url:
        yield url


def test_models_health_and_binding(server_url):
    assert server_url.startswith("http://127.0.0.1:") and server_url.endswith("/v1")
    models = httpx.get(f"{server_url}/models").json()
    assert models["data"][0]["id"] == "sage_gym.builtin"
    assert httpx.get(f"{_root(server_url)}/health").json() == {"status": "ok"}


def test_chat_completion_shape(server_url):
    messages = emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "json_schema")
    response = httpx.post(f"{server_url}/chat/completions", json=_body(messages, response_format={"type": "json_object"}))
    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "chat.completion" and payload["choices"][0]["finish_reason"] == "stop"
    assert set(json.loads(payload["choices"][0]["message"]["content"])) == {"meaning", "goal", "thoughts", "feeling", "change"}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda body: body.pop("seed"), "seed"),
        (lambda body: body.update(messages=[{"role": "user", "content": "hi"}]), "system prompt"),
        (lambda body: body.update(stream=True), "streaming"),
        (lambda body: body.update(response_format={"type": "xml"}), "response_format"),
    ],
)
def test_unreadable_requests_get_400_with_a_reason(server_url, change, message):
    body = _body(emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "tagged"))
    change(body)
    response = httpx.post(f"{server_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_a_reply_request_that_contradicts_its_emotion_update_gets_400(server_url):
    scenario = make_scenario()
    first = httpx.post(f"{server_url}/chat/completions", json=_body(emotion_update_messages(PROMPTS, scenario, Rules(), 40, HISTORY, REPLY, "tagged")))
    update = parse_emotion_update(first.json()["choices"][0]["message"]["content"], (-10, 10))
    right = emotion_bucket(40 + update.change)
    wrong = next(b for b in ("high", "medium", "low") if b != right)
    for bucket, tampered_change, expected in ((wrong, 0, "emotion is"), (right, 7, "replayed change")):
        bad = EmotionUpdate(change=update.change + tampered_change, thoughts=update.thoughts)
        messages = user_reply_messages(PROMPTS, scenario, Rules(), 40, HISTORY, REPLY, bad, bucket, "", "tagged")
        response = httpx.post(f"{server_url}/chat/completions", json=_body(messages))
        assert response.status_code == 400 and expected in response.json()["error"]["message"]


def test_injected_faults_and_rejections():
    messages = emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "json_schema")
    schema_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    with run_server_in_thread(rate_429=1.0, retry_after=2) as url:
        response = httpx.post(f"{url}/chat/completions", json=_body(messages))
        assert response.status_code == 429 and response.headers["retry-after"] == "2"
    with run_server_in_thread(rate_500=1.0) as url:
        assert httpx.post(f"{url}/chat/completions", json=_body(messages)).status_code == 500
    with run_server_in_thread(hang_rate=1.0, hang_seconds=5) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/chat/completions", json=_body(messages), timeout=0.3)
    with run_server_in_thread(reject_json_schema=True) as url:
        response = httpx.post(f"{url}/chat/completions", json=_body(messages, response_format=schema_format))
        assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"
        assert httpx.post(f"{url}/chat/completions", json=_body(messages, response_format={"type": "json_object"})).status_code == 200
    with run_server_in_thread(malformed_rate=1.0, seed=1) as url:
        for _ in range(8):
            choice = httpx.post(f"{url}/chat/completions", json=_body(messages)).json()["choices"][0]
            if choice["finish_reason"] != "length":
                with pytest.raises(ParseError):
                    parse_emotion_update(choice["message"]["content"], (-10, 10))
        stats = httpx.get(f"{_root(url)}/stats").json()
        assert stats["faults"]["malformed"] == 8 and stats["requests"] == 8


def test_required_api_key():
    messages = emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "tagged")
    with run_server_in_thread(api_key="right-key") as url:
        assert httpx.post(f"{url}/chat/completions", json=_body(messages), headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(f"{url}/chat/completions", json=_body(messages), headers={"Authorization": "Bearer right-key"}).status_code == 200


def test_fault_config_can_change_while_serving():
    faults = FaultConfig(rate_500=1.0)
    messages = emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "tagged")
    with run_server_in_thread(faults=faults) as url:
        assert httpx.post(f"{url}/chat/completions", json=_body(messages)).status_code == 500
        faults.rate_500 = 0.0
        assert httpx.post(f"{url}/chat/completions", json=_body(messages)).status_code == 200
    with pytest.raises(ValueError, match="not both"):
        with run_server_in_thread(faults=faults, rate_429=0.5):
            pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sage_gym.servers.simulator_server", "--port", str(port), "--rate-500", "1.0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        messages = emotion_update_messages(PROMPTS, make_scenario(), Rules(), 40, HISTORY, REPLY, "tagged")
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=_body(messages)).status_code == 500
    finally:
        process.terminate()
        process.wait(timeout=10)
