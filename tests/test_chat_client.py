"""ChatClient against the local server: real servers' answers, hostile answers, deadlines, auth, pickling.

The local server emulates how each real OpenAI-compatible server treats `response_format`
(`sage_gym.servers.simulator_server.EMULATIONS`); `output_format="auto"` must settle on a mode that
server serves without a single retry. `raw_answer` makes the server answer arbitrary bytes: every
one must come back as a bounded, retried `ChatError`/`SimulatorError`, never a raw exception.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import pickle
import time

import gymnasium as gym
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, Rules, SimulatorError
from sage_gym.simulators.client import CallLog, ChatAuthError, ChatClient, ChatDeadlineError, ChatError, Unreadable
from sage_gym.simulators.openai_sim import OpenAISimulator, forget_response_modes
from sage_gym.servers.simulator_server import EMULATIONS, FaultConfig, run_server_in_thread
from sage_gym.vector import SageVectorEnv

REPLY = "That sounds really hard. What happened next?"
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "seed": 1}
# what `auto` settles on for each emulated server
SETTLES_ON = {
    "llama-cpp-python": "json_object",  # json_schema: HTTP 500 naming response_format
    "llama-server": "json_schema",
    "llama-server-legacy": "json_object",  # json_schema: HTTP 500 from the request parser
    "vllm": "json_schema",
    "sglang": "json_schema",
    "ollama": "json_schema",
    "lm-studio": "json_schema",  # refuses json_object, takes json_schema
    "openai": "json_schema",
    "openai-legacy": "tagged",  # refuses json_schema, and json_object with a "schema" key
}


@pytest.fixture(autouse=True)
def _fresh_mode_memory():
    forget_response_modes()
    yield
    forget_response_modes()


@pytest.fixture(scope="module")
def raw_server():
    faults = FaultConfig()
    with run_server_in_thread(faults=faults) as url:
        yield url, faults


def one_turn(simulator, seed=0, turns=2):
    """The reactions of `turns` turns of one dialogue (first eval scenario), and the same with the built-in user."""
    scenario = load_split("eval")[0]

    async def play(sim):
        state = await sim.open(scenario, np.random.default_rng(seed), Rules())
        history, out = [{"role": "user", "content": scenario.first_message}], []
        for _ in range(turns):
            reaction = await sim.react(scenario, state, tuple(history), REPLY)
            out.append((reaction.emotion, reaction.change, reaction.reply, reaction.leaves))
            history += [{"role": "assistant", "content": REPLY}, {"role": "user", "content": reaction.reply}]
            state = reaction.state
        return out

    async def main():
        async with simulator:
            return await play(simulator)

    return asyncio.run(main()), asyncio.run(play(BuiltinSimulator()))


# ----------------------------------------------------------------------------------------------
# the compatibility matrix


def test_every_emulation_is_in_the_table():
    assert set(SETTLES_ON) == set(EMULATIONS)


@pytest.mark.parametrize("server", sorted(SETTLES_ON))
def test_auto_settles_on_what_each_real_server_serves_without_retrying(server):
    with run_server_in_thread(emulate=server) as url:
        simulator = OpenAISimulator(model="m", base_url=url, max_retries=0)  # a retry would fail the test
        got, expected = one_turn(simulator)
        served = httpx.get(url.removesuffix("/v1") + "/stats").json()
    assert got == expected
    assert simulator.manifest()["output_format_in_use"] == SETTLES_ON[server]
    assert simulator.stats.retries == 0 and simulator.stats.failures == 0
    steps_down = ("json_schema", "json_object", "tagged").index(SETTLES_ON[server])
    assert simulator.stats.fallbacks == steps_down  # probed once, then remembered for the endpoint and model
    assert served["rejected"] == steps_down


@pytest.mark.parametrize(("server", "fixed"), [("llama-cpp-python", "json_schema"), ("lm-studio", "json_object"), ("openai", "json_object")])
def test_a_fixed_format_the_server_refuses_fails_at_once_and_says_why(server, fixed):
    with run_server_in_thread(emulate=server) as url:
        simulator = OpenAISimulator(model="m", base_url=url, output_format=fixed, max_retries=5)
        with pytest.raises(SimulatorError, match=rf"after 1 attempt: HTTP (400|500): the server does not take response_format '{fixed}'.*output_format='auto'"):
            one_turn(simulator)


def test_a_plain_500_is_retried_not_taken_for_a_format_rejection():
    faults = FaultConfig(rate_500=1.0)
    with run_server_in_thread(faults=faults) as url:
        simulator = OpenAISimulator(model="m", base_url=url, max_retries=2, backoff_initial=0.001, backoff_max=0.002)
        with pytest.raises(SimulatorError, match="3 attempts: HTTP 500"):
            one_turn(simulator)
    assert simulator.stats.fallbacks == 0 and simulator.manifest()["output_format_in_use"] == "json_schema"


@pytest.mark.slow
def test_against_a_real_llama_cpp_server():
    """Runs when SAGE_TEST_LLAMA_CPP_URL points at a llama.cpp server (llama-server or llama-cpp-python's)."""
    url = os.environ.get("SAGE_TEST_LLAMA_CPP_URL")
    if not url:
        pytest.skip("set SAGE_TEST_LLAMA_CPP_URL=http://HOST:PORT/v1 to a running llama.cpp server to run this test")
    model = os.environ.get("SAGE_TEST_LLAMA_CPP_MODEL", "local")
    simulator = OpenAISimulator(model=model, base_url=url, max_tokens=256, temperature=0.0, step_timeout=600)
    env = gym.make("SageDialogue-v0", scenarios="eval", simulator=simulator, max_turns=2)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(REPLY)
    assert info["analysis"]["output_format"] in ("json_schema", "json_object")  # never tagged: llama.cpp takes a schema
    assert isinstance(info["emotion"], int) and simulator.stats.failures == 0


# ----------------------------------------------------------------------------------------------
# hostile answers


MALFORMED_ANSWERS = [
    b"",
    b"not json at all",
    b'{"choices": [null]}',
    b'{"choices": "abc"}',
    b'{"choices": []}',
    b'{"choices": [{"finish_reason": "stop"}]}',  # no message
    b'{"choices": [{"message": "hello"}]}',
    b'{"choices": [{"message": {"content": 42}}]}',
    b'{"choices": [{"message": {"content": "ok"}, "finish_reason": 7}]}',
    b'{"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}]}',
    b'{"choices": [{"message": {"content": "\\ud800"}, "finish_reason": "stop"}]}',  # a lone surrogate
    b"[1, 2, 3]",
    b'{"error": {"message": "overloaded"}}',
    b"\xff\xfe\x00garbage",
    b"[" * 100_000,  # nesting past any parser's recursion limit
]


def ask(url: str, max_retries: int = 1) -> str:
    client = ChatClient(url, max_retries=max_retries, backoff_initial=0.0, backoff_max=0.0)

    async def main():
        try:
            return await client.complete(REQUEST)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS, ids=range(len(MALFORMED_ANSWERS)))
def test_malformed_answers_are_retried_then_a_chat_error(raw_server, answer):
    url, faults = raw_server
    faults.raw_answer = answer
    try:
        with pytest.raises(ChatError, match="failed after 2 attempts") as caught:
            ask(url)
    finally:
        faults.raw_answer = None
    assert caught.value.__cause__ is None and caught.value.attempts == 2


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# near-misses of a chat completion, so that hypothesis reaches the deeper checks too
COMPLETIONS = st.fixed_dictionaries(
    {"choices": st.lists(st.none() | JSON | st.fixed_dictionaries({"message": JSON | st.fixed_dictionaries({"content": JSON}), "finish_reason": JSON}), max_size=2)}
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(answer=st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()), COMPLETIONS.map(lambda v: json.dumps(v).encode())))
def test_any_answer_is_text_or_a_bounded_chat_error(raw_server, answer):
    url, faults = raw_server
    faults.raw_answer = answer
    try:
        text = ask(url, max_retries=0)
    except ChatError as err:  # nothing else may escape
        assert err.attempts == 1 and "failed after 1 attempt" in str(err)
    else:  # only a well-formed answer with text gets through
        choice = json.loads(answer)["choices"][0]
        assert text == choice["message"]["content"] and isinstance(text, str) and choice.get("finish_reason") != "length"
    finally:
        faults.raw_answer = None


def test_malformed_answers_end_one_vector_dialogue_as_error_and_keep_the_others(raw_server):
    url, faults = raw_server
    faults.raw_answer = b'{"choices": [null]}'
    try:
        simulator = OpenAISimulator(model="m", base_url=url, max_retries=1, backoff_initial=0.0, backoff_max=0.0)
        envs = SageVectorEnv(2, "eval", simulator, autoreset_mode="disabled")
        envs.reset(seed=0)
        _, rewards, terminations, _, infos = envs.step([REPLY, REPLY])
    finally:
        faults.raw_answer = None
    assert infos["outcome"].tolist() == ["error", "error"] and terminations.all() and not rewards.any()
    assert all("SimulatorError" in e and "no message" in e and "2 attempts" in e for e in infos["error"])


# ----------------------------------------------------------------------------------------------
# deadlines, authentication


def test_the_step_deadline_bounds_a_hanging_server():
    with run_server_in_thread(hang_rate=1.0, hang_seconds=30) as url:
        simulator = OpenAISimulator(model="m", base_url=url, timeout=10, max_retries=5, step_timeout=0.6, backoff_initial=0.05)
        env = gym.make("SageDialogue-v0", scenarios="eval", simulator=simulator)
        env.reset(seed=0)
        started = time.monotonic()
        with pytest.raises(SimulatorError, match=r"ran out of time: its deadline passed after 1 attempt.*step_timeout=0.6 s"):
            env.step(REPLY)
        assert time.monotonic() - started < 2.0  # not 6 x 10 s
        assert len(env.unwrapped.history) == 1 and not env.unwrapped.done  # the dialogue is as it was


def test_the_deadline_spans_the_retries():
    client = ChatClient("http://127.0.0.1:9/v1", max_retries=50, backoff_initial=0.1, backoff_max=0.1)  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(ChatDeadlineError, match="deadline passed after"):
        asyncio.run(client.complete(REQUEST, deadline=time.monotonic() + 0.5))
    assert time.monotonic() - started < 1.5 and client.stats.retries < 50


def test_auth_errors_fail_at_once_and_never_show_the_key():
    secret = "sk-test-SECRET-0123456789abcdef"
    with run_server_in_thread(api_key="the-right-key") as url:
        client = ChatClient(url, api_key=secret, max_retries=5)
        with pytest.raises(ChatAuthError, match="after 1 attempt: HTTP 401") as caught:
            asyncio.run(client.complete(REQUEST))
        served = httpx.get(url.removesuffix("/v1") + "/stats").json()
    assert served["requests"] == 1 and secret not in str(caught.value) and "***" in str(caught.value)


def test_keep_alive_connections_are_reused():
    with run_server_in_thread() as url:
        client = ChatClient(url, max_concurrency=2)

        async def main():
            for _ in range(5):
                with pytest.raises(ChatError):  # the server refuses this request (no simulator prompts): 400
                    await client.complete(REQUEST)
            pool = next(iter(client._pools.values()))
            return len(pool.idle)

        assert asyncio.run(main()) == 1


# ----------------------------------------------------------------------------------------------
# pickling


def test_simulator_pickles_and_deep_copies_as_its_settings(raw_server):
    url, _ = raw_server
    simulator = OpenAISimulator(model="m", base_url=url, api_key="sk-test-SECRET-0123456789abcdef", temperature=0.2, step_timeout=9)
    env = gym.make("SageDialogue-v0", scenarios="eval", simulator=simulator)
    env.reset(seed=0)
    env.step(REPLY)  # the simulator now holds a connection pool on sage_gym's loop
    for clone in (pickle.loads(pickle.dumps(simulator)), copy.deepcopy(simulator)):
        assert clone.manifest() == simulator.manifest() and clone.client._pools == {} and clone.stats.calls == 0
        assert clone.client._request_headers == simulator.client._request_headers  # the key travels with it
        got, expected = one_turn(clone)
        assert got == expected


def test_read_hooks_truncation_and_the_call_log(raw_server):
    url, faults = raw_server
    faults.raw_answer = b'{"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}]}'
    client = ChatClient(url, max_retries=2, backoff_initial=0.0, backoff_max=0.0)
    log = CallLog()

    def picky(answer):
        raise Unreadable("never good enough")

    try:
        assert asyncio.run(client.complete(REQUEST, allow_truncated=True)) == "cut"
        with pytest.raises(ChatError, match="3 attempts: unreadable answer: never good enough"):
            asyncio.run(client.complete(REQUEST, picky, allow_truncated=True, log=log))
    finally:
        faults.raw_answer = None
    assert (log.requests, log.attempts, log.retries, log.causes) == (3, 3, 2, {"unparseable": 2})


def test_scenarios_with_lists_in_their_extras_work_over_http():
    from tests.conftest import make_scenario

    scenario = make_scenario("t-extras", extras={"unrecognised": ["task: free text"], "source": "sage"})  # unhashable
    with run_server_in_thread() as url:
        simulator = OpenAISimulator(model="m", base_url=url, max_retries=0)

        async def play(sim):
            state = await sim.open(scenario, np.random.default_rng(0), Rules())
            reaction = await sim.react(scenario, state, ({"role": "user", "content": scenario.first_message},), REPLY)
            return reaction.emotion, reaction.reply

        assert asyncio.run(play(simulator)) == asyncio.run(play(BuiltinSimulator()))
