"""OpenAISimulator end to end over loopback HTTP, against the local server playing the built-in simulator.

Same seed, same agent replies: the whole HTTP path (prompts, response formats, parsing, retries)
must reproduce the in-process BuiltinSimulator turn by turn, through faults and fallbacks.
"""

import asyncio
import logging
import traceback

import gymnasium as gym
import httpx
import numpy as np
import pytest

import sage_gym._loop  # importing sage_gym registers SageDialogue-v0
from agents.replies.baselines import make_reference_agent
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, Rules, SimulatorError, make_simulator
from sage_gym.simulators.client import _Transient
from sage_gym.servers.simulator_server import FaultConfig, run_server_in_thread
from sage_gym.simulators.openai_sim import OpenAISimulator, OpenAISimulatorOptions, forget_response_modes, retry_after_seconds
from sage_gym.transcripts import read_jsonl
from tests.conftest import make_scenario

SECRET = "sk-test-SECRET-0123456789abcdef"
AGENTS = ("empathic", "dismissive", "random", "solution")


@pytest.fixture(autouse=True)
def _fresh_mode_memory():
    forget_response_modes()  # ports are reused between tests; each test probes its own server
    yield
    forget_response_modes()


@pytest.fixture(scope="module")
def server_url():
    with run_server_in_thread() as url:
        yield url


def scenarios():
    """The shipped eval scenarios (whatever their ids) and two in-code ones that can walk out."""
    shipped = list(load_split("eval"))[:4]
    return shipped + [make_scenario("t-avoidant", intention="concrete_advice", character="avoidant"), make_scenario("t-passive", intention="specific_praise", character="passive")]


async def run_episode(simulator, scenario, seed, agent_name, max_turns=6, rules=Rules()):
    """(emotion, change, bucket, thoughts, reply, leaves) per turn, and the reactions' analyses."""
    state = await simulator.open(scenario, np.random.default_rng(seed), rules)
    history = [{"role": "user", "content": scenario.first_message}]
    agent = make_reference_agent(agent_name, seed)
    turns, analyses = [], []
    for _ in range(max_turns):
        reply = agent(history)
        reaction = await simulator.react(scenario, state, tuple(history), reply)
        turns.append((reaction.emotion, reaction.change, reaction.bucket, reaction.thoughts, reaction.reply, reaction.leaves))
        analyses.append(dict(reaction.analysis))
        history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
        state = reaction.state
        assert state.turn == len(turns)
        if reaction.leaves:
            break
    return turns, analyses


# ----------------------------------------------------------------------------------------------
# the HTTP path reproduces the built-in simulator


@pytest.mark.parametrize("output_format", ["auto", "json_object", "tagged"])
@pytest.mark.parametrize("single_call", [False, True])
def test_episodes_match_the_builtin_simulator(server_url, output_format, single_call):
    rules = Rules(initial_emotion=30, change_clip=(-10, 10), success_at=100, failure_below=10)

    async def main():
        simulator = OpenAISimulator(model="sage-builtin", base_url=server_url, output_format=output_format, single_call=single_call)
        async with simulator:
            for i, scenario in enumerate(scenarios()):
                for agent in AGENTS[: 2 + i % 3]:
                    seed = 100 * i + len(agent)
                    over_http, analyses = await run_episode(simulator, scenario, seed, agent, rules=rules)
                    in_process, _ = await run_episode(BuiltinSimulator(), scenario, seed, agent, rules=rules)
                    assert over_http == in_process, (scenario.id, agent, seed)
                    expected_mode = "json_schema" if output_format == "auto" else output_format
                    assert all(a["output_format"] == expected_mode and a["retries"] == 0 for a in analyses)
                    assert all(a["calls"] == (1 if single_call else 2) for a in analyses)
        return simulator.stats

    stats = asyncio.run(main())
    assert stats.retries == 0 and stats.failures == 0 and stats.reactions > 0


def test_full_length_episodes_match_and_reach_every_ending(server_url):
    """Matching is only convincing if it covers the goodbye at 100, the walk-out below 10, and leaving early."""

    async def main():
        endings = set()
        simulator = OpenAISimulator(model="m", base_url=server_url, output_format="tagged")
        async with simulator:
            for i, scenario in enumerate(scenarios()):
                for agent in AGENTS:
                    turns, _ = await run_episode(simulator, scenario, i, agent, max_turns=10)
                    assert turns == (await run_episode(BuiltinSimulator(), scenario, i, agent, max_turns=10))[0]
                    emotion, leaves = turns[-1][0], turns[-1][5]
                    endings.add("success" if emotion >= 100 else "failure" if emotion < 10 else "left" if leaves else "running")
        return endings

    assert {"success", "failure", "left"} <= asyncio.run(main())


def test_gymnasium_make_with_a_name_or_an_instance_matches_builtin(server_url):
    kwargs = {"base_url": server_url, "model": "m", "api_key": SECRET}
    envs = {
        "builtin": gym.make("SageDialogue-v0", scenarios="eval"),
        "by_name": gym.make("SageDialogue-v0", scenarios="eval", simulator="openai", simulator_kwargs=kwargs),
        "instance": gym.make("SageDialogue-v0", scenarios="eval", simulator=OpenAISimulator(**kwargs, output_format="tagged")),
    }
    trajectories = {}
    for name, env in envs.items():
        observation, info = env.reset(seed=11)
        agent = make_reference_agent("empathic", 11)
        steps = [observation]
        while True:
            observation, reward, terminated, truncated, info = env.step(agent(info["history"]))
            steps.append((observation, reward, terminated, truncated, info["emotion"], info["change"], info["thoughts"], info["outcome"]))
            if terminated or truncated:
                break
        trajectories[name] = steps
        env.close()
    assert trajectories["by_name"] == trajectories["builtin"] == trajectories["instance"]
    assert isinstance(envs["by_name"].unwrapped.simulator, OpenAISimulator)
    assert SECRET not in repr(envs["by_name"].unwrapped.manifest())


# ----------------------------------------------------------------------------------------------
# faults


def test_fifty_episodes_finish_correctly_through_thirty_percent_faults():
    faults = FaultConfig(rate_429=0.075, rate_500=0.075, hang_rate=0.075, malformed_rate=0.075, hang_seconds=5.0, seed=7)
    pool = scenarios()

    async def main(url):
        # half the episodes in JSON, half in tagged text (where a truncated answer can still look well formed)
        settings = {"base_url": url, "timeout": 0.3, "max_retries": 12, "backoff_initial": 0.01, "backoff_max": 0.05, "max_concurrency": 4}
        simulators = [OpenAISimulator(model="m", **settings), OpenAISimulator(model="m", output_format="tagged", **settings)]
        jobs = [run_episode(simulators[i % 2], pool[i % len(pool)], i, AGENTS[i % len(AGENTS)], max_turns=3) for i in range(50)]
        results = await asyncio.gather(*jobs)
        for simulator in simulators:
            await simulator.aclose()
        expected = [await run_episode(BuiltinSimulator(), pool[i % len(pool)], i, AGENTS[i % len(AGENTS)], max_turns=3) for i in range(50)]
        return simulators, results, expected

    with run_server_in_thread(faults=faults) as url:
        simulators, results, expected = asyncio.run(main(url))
        served = httpx.get(url.removesuffix("/v1") + "/stats").json()

    assert [turns for turns, _ in results] == [turns for turns, _ in expected]  # same emotions, same replies
    reported = sum(a["retries"] for _, analyses in results for a in analyses)
    stats = [simulator.stats.as_dict() for simulator in simulators]
    retries = sum(s["retries"] for s in stats)
    assert all(s["failures"] == 0 for s in stats)
    assert sum(s["reactions"] for s in stats) == sum(len(turns) for turns, _ in results)
    assert reported == retries
    injected = sum(served["faults"].values())
    assert injected > 0 and retries >= injected  # every injected fault cost one retry (slow answers may add more)
    causes = set().union(*(s["retry_causes"] for s in stats))
    assert {"rate_limit", "server_error", "timeout", "unparseable", "truncated"} <= causes
    assert sum(s["calls"] for s in stats) == served["requests"]


def test_faults_beyond_the_budget_raise_and_the_env_recovers(tmp_path):
    faults = FaultConfig(rate_500=1.0)
    transcript = tmp_path / "episodes.jsonl"
    with run_server_in_thread(faults=faults) as url:
        kwargs = {"base_url": url, "model": "sim-model", "api_key": SECRET, "max_retries": 2, "backoff_initial": 0.01, "backoff_max": 0.02}
        env = gym.make("SageDialogue-v0", scenarios="eval", simulator="openai", simulator_kwargs=kwargs, transcript_path=transcript)
        reference = gym.make("SageDialogue-v0", scenarios="eval")
        _, info = env.reset(seed=3)
        reference.reset(seed=3)
        action = make_reference_agent("empathic", 3)(info["history"])
        before = (env.unwrapped.emotion, env.unwrapped.history, env.unwrapped.done)

        with pytest.raises(SimulatorError) as caught:
            env.step(action)
        message = str(caught.value)
        assert url in message and "sim-model" in message and "3 attempts" in message and "HTTP 500" in message
        assert (env.unwrapped.emotion, env.unwrapped.history, env.unwrapped.done) == before
        assert env.unwrapped.simulator.stats.failures == 1

        faults.rate_500 = 0.0  # the endpoint recovers: the same step now works
        observation, reward, terminated, truncated, info = env.step(action)
        expected = reference.step(action)
        assert (observation, reward, terminated, truncated) == expected[:4]
        assert {k: info[k] for k in ("emotion", "change", "thoughts", "history", "turn")} == {k: expected[4][k] for k in ("emotion", "change", "thoughts", "history", "turn")}

        env.unwrapped.mark_error(caught.value)  # what the vector env does with a failed dialogue
        env.close()
    text = transcript.read_text()
    assert "HTTP 500" in text and SECRET not in text
    assert [r["outcome"] for r in read_jsonl(transcript)] == ["error"]


def test_the_api_key_never_appears(caplog):
    caplog.set_level(logging.DEBUG)
    with run_server_in_thread(api_key="the-right-key") as url:  # its 401 echoes the key it was given
        simulator = OpenAISimulator(model="m", base_url=url, api_key=SECRET, max_retries=3, backoff_initial=0.01)
        env = gym.make("SageDialogue-v0", scenarios="eval", simulator=simulator)
        _, info = env.reset(seed=0)
        with pytest.raises(SimulatorError) as caught:
            env.step("That sounds hard. What happened next?")
    error = caught.value
    assert "401" in str(error) and "1 attempt:" in str(error)  # not retried: a bad key stays bad
    shown = [str(error), repr(error), "".join(traceback.format_exception(error)), repr(simulator), repr(simulator.manifest()), caplog.text]
    assert error.__cause__ is None and error.__context__ is None
    for text in shown:
        assert SECRET not in text and SECRET[10:] not in text


def test_the_right_key_from_the_environment(monkeypatch):
    with run_server_in_thread(api_key=SECRET) as url:
        monkeypatch.setenv("SAGE_SIMULATOR_BASE_URL", url)
        monkeypatch.setenv("SAGE_SIMULATOR_MODEL", "env-model")
        monkeypatch.setenv("SAGE_SIMULATOR_API_KEY", SECRET)
        simulator = make_simulator("openai")
        assert (simulator.model, simulator.endpoint) == ("env-model", url)
        turns, _ = asyncio.run(run_episode(simulator, scenarios()[0], 1, "empathic", max_turns=2))
        assert len(turns) == 2


# ----------------------------------------------------------------------------------------------
# structured output fallback


@pytest.mark.parametrize(
    "rejects, settles_on, seen",
    [
        ({"reject_json_schema": True}, "json_object", {"json_schema", "json_object+schema"}),
        ({"reject_json_schema": True, "reject_json_object": True}, "tagged", {"json_schema", "json_object+schema", "none"}),
    ],
)
def test_response_format_falls_back_and_is_remembered(rejects, settles_on, seen):
    scenario = scenarios()[0]
    with run_server_in_thread(**rejects) as url:

        async def main():
            first = OpenAISimulator(model="m", base_url=url)
            async with first:
                turns, analyses = await run_episode(first, scenario, 5, "empathic", max_turns=3)
            second = OpenAISimulator(model="m", base_url=url)  # a new instance for the same endpoint
            async with second:
                await run_episode(second, scenario, 5, "empathic", max_turns=1)
            return first, second, turns, analyses

        first, second, turns, analyses = asyncio.run(main())
        served = httpx.get(url.removesuffix("/v1") + "/stats").json()
    expected, _ = asyncio.run(run_episode(BuiltinSimulator(), scenario, 5, "empathic", max_turns=3))
    assert turns == expected
    assert {a["output_format"] for a in analyses} == {settles_on}
    assert first.manifest()["output_format_in_use"] == settles_on
    assert first.stats.fallbacks >= 1 and second.stats.fallbacks == 0
    assert set(served["response_formats"]) == seen


def test_an_explicit_format_the_server_rejects_is_a_clear_error():
    with run_server_in_thread(reject_json_schema=True) as url:
        simulator = OpenAISimulator(model="m", base_url=url, output_format="json_schema")
        with pytest.raises(SimulatorError, match="response_format 'json_schema'.*output_format='auto'"):
            asyncio.run(run_episode(simulator, scenarios()[0], 0, "empathic", max_turns=1))


# ----------------------------------------------------------------------------------------------
# errors that retrying cannot fix, connections, limits


def test_wrong_base_url_and_unreachable_endpoint(server_url):
    no_v1 = OpenAISimulator(model="m", base_url=server_url.removesuffix("/v1"), max_retries=3)
    with pytest.raises(SimulatorError, match=r"1 attempt: HTTP 404: unknown model or wrong base_url"):
        asyncio.run(run_episode(no_v1, scenarios()[0], 0, "empathic", max_turns=1))
    with run_server_in_thread() as url:
        closed = url  # nothing listens here once the server is gone
    nobody = OpenAISimulator(model="m", base_url=closed, max_retries=1, backoff_initial=0.01, timeout=2)
    with pytest.raises(SimulatorError, match="2 attempts: connection error"):
        asyncio.run(run_episode(nobody, scenarios()[0], 0, "empathic", max_turns=1))
    assert nobody.stats.retry_causes == {"connection": 1}


def test_concurrency_limit_per_endpoint():
    with run_server_in_thread(latency_ms=40) as url:
        simulator = OpenAISimulator(model="m", base_url=url, max_concurrency=3)

        async def main():
            async with simulator:
                await asyncio.gather(*(run_episode(simulator, scenarios()[0], i, "empathic", max_turns=1) for i in range(12)))

        asyncio.run(main())
        served = httpx.get(url.removesuffix("/v1") + "/stats").json()
    assert served["requests"] == 24 and 1 <= served["peak_in_flight"] <= 3


def test_one_simulator_serves_several_event_loops(server_url):
    simulator = OpenAISimulator(model="m", base_url=server_url)
    env = gym.make("SageDialogue-v0", scenarios="eval", simulator=simulator)
    env.reset(seed=1)
    env.step("That sounds really hard. What happened?")  # on sage_gym's background loop
    first, _ = asyncio.run(run_episode(simulator, scenarios()[0], 2, "empathic", max_turns=1))  # a loop of our own
    second, _ = asyncio.run(run_episode(simulator, scenarios()[0], 2, "empathic", max_turns=1))  # and another
    assert first == second
    assert len(simulator.client._pools) == 2  # the background loop's, and the last closed loop's until the next call
    env.step("What was the hardest part of it for you?")
    assert list(simulator.client._pools) == [sage_gym._loop.background_loop()]  # clients of closed loops are dropped


# ----------------------------------------------------------------------------------------------
# configuration


def test_configuration_errors_and_environment_fallbacks(monkeypatch):
    for name in ("SAGE_SIMULATOR_BASE_URL", "SAGE_SIMULATOR_MODEL", "SAGE_SIMULATOR_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="needs a model name.*SAGE_SIMULATOR_MODEL"):
        OpenAISimulator()
    with pytest.raises(ValueError, match="needs an API key"):
        OpenAISimulator(model="gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    local = OpenAISimulator(model="m")
    assert local.endpoint == "http://127.0.0.1:9/v1"  # a local server needs no key
    monkeypatch.setenv("SAGE_SIMULATOR_BASE_URL", "http://user:pw@127.0.0.1:8/v1?key=abc")
    assert OpenAISimulator(model="m").endpoint == "http://127.0.0.1:8/v1"  # credentials never shown
    for bad in ({"output_format": "xml"}, {"timeout": 0}, {"max_retries": -1}, {"max_concurrency": 0}, {"top_p": 1.5}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            OpenAISimulator(model="m", **bad)
    with pytest.raises(ValueError, match="simulator_kwargs"):
        make_simulator(OpenAISimulator(model="m"), model="other")


def test_manifest_records_the_sampling_settings():
    simulator = OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", api_key=SECRET, temperature=0.3, top_p=0.9, max_tokens=200)
    manifest = simulator.manifest()
    assert {k: manifest[k] for k in ("kind", "model", "temperature", "top_p", "max_tokens", "seed", "single_call")} == {
        "kind": "openai", "model": "m", "temperature": 0.3, "top_p": 0.9, "max_tokens": 200, "seed": True, "single_call": False,
    }
    assert len(manifest["prompts_sha256"]) == 64 and SECRET not in repr(manifest)


def test_settings_come_as_keywords_or_as_one_options_object():
    settings = {"temperature": 0.3, "timeout": 10, "single_call": 1, "headers": {"Authorization": f"Bearer {SECRET}"}}
    by_keywords = OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", **settings)
    options = OpenAISimulatorOptions(**settings)
    by_options = OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", options=options)
    assert by_keywords.options == by_options.options == options and by_keywords.manifest() == by_options.manifest()
    assert (options.timeout, options.single_call) == (10.0, True)  # as the manifest reports them, whatever type was given
    assert SECRET not in repr(options) and SECRET not in repr(by_keywords)
    assert OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", options=options, max_retries=1).options.max_retries == 1
    with pytest.raises(TypeError, match="max_retry"):
        OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", max_retry=3)
    with pytest.raises(ValueError, match="top_p"):
        OpenAISimulatorOptions(top_p=2.0)


def test_retry_after_is_read_and_capped():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None

    class Outcome:
        def __init__(self, error):
            self.error = error

        def exception(self):
            return self.error

    class State:
        attempt_number = 1

    simulator = OpenAISimulator(model="m", base_url="http://127.0.0.1:9/v1", backoff_initial=0.01, backoff_max=0.02, max_retry_after=1.5)
    state = State()
    state.outcome = Outcome(_Transient("rate_limit", "429", retry_after=100.0))
    assert simulator.client._wait(state) == 1.5
    state.outcome = Outcome(_Transient("rate_limit", "429", retry_after=0.5))
    assert simulator.client._wait(state) == 0.5
    state.outcome = Outcome(_Transient("server_error", "500"))
    assert simulator.client._wait(state) <= 0.03
