"""The simulator call ledger on its own, with a fake transport: keys, modes, concurrency, no secrets."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

import pytest

from sage_gym.simulators.ledger import Ledger, LedgerMiss, cost, request_key

SECRET = "sk-test-SECRET-0123456789abcdef"


def request(text="hello", seed=1, **extra):
    return {"endpoint": "http://127.0.0.1:9/v1", "model": "m", "messages": [{"role": "user", "content": text}],
            "temperature": 0.7, "seed": seed, "response_format": {"type": "json_object"}, **extra}


class FakeTransport:
    def __init__(self, delay=0.0):
        self.sent, self.delay = [], delay

    async def __call__(self, req):
        self.sent.append(req)
        await asyncio.sleep(self.delay)
        return {"choices": [{"message": {"content": f"answer to {req['messages'][0]['content']} #{len(self.sent)}"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3}}


def run(ledger, req, transport):
    return asyncio.run(ledger.call(req, lambda: transport(req)))


def test_the_key_covers_the_request_and_not_the_credentials():
    base = request_key(request())
    assert request_key(request()) == base
    for changed in (request("bye"), request(seed=2), request(temperature=0.1), request(model="other"), request(response_format=None),
                    request(endpoint="http://127.0.0.1:10/v1")):
        assert request_key(changed) != base
    same = request(api_key=SECRET, headers={"Authorization": f"Bearer {SECRET}"}, timeout=3)
    assert request_key(same) == base
    assert request_key(request(endpoint="http://user:pw@127.0.0.1:9/v1")) == base
    assert request_key(dict(reversed(list(request().items())))) == base  # key order does not matter


def test_modes(tmp_path):
    path, transport = tmp_path / "calls.sqlite", FakeTransport()
    with pytest.raises(FileNotFoundError):
        Ledger(path, "replay")
    with pytest.raises(ValueError, match="unknown ledger mode"):
        Ledger(path, "sometimes")

    recorder = Ledger(path, "record-and-replay")
    first = run(recorder, request(), transport)
    assert run(recorder, request(), transport) == first and len(transport.sent) == 1  # the second is replayed
    assert recorder.stats.as_dict() == {"sent": 1, "replayed": 1, "recorded": 1, "prompt_tokens": 20, "completion_tokens": 6,
                                        "sent_prompt_tokens": 10, "sent_completion_tokens": 3}
    recorder.close()

    replayer = Ledger(path, "replay")
    assert run(replayer, request(), transport) == first and len(transport.sent) == 1
    with pytest.raises(LedgerMiss, match="no answer for this request to model 'm'"):
        run(replayer, request("never asked"), transport)
    assert len(replayer) == 1

    rerecorder = Ledger(path, "record")
    again = run(rerecorder, request(), transport)
    assert again != first and len(transport.sent) == 2 and len(rerecorder) == 1  # sent again, stored in place
    assert Ledger(path, "replay").lookup(request()) == again

    off = Ledger(tmp_path / "unused.sqlite", "off")
    run(off, request(), transport)
    assert len(transport.sent) == 3 and not (tmp_path / "unused.sqlite").exists()


def test_a_failed_send_is_not_recorded(tmp_path):
    ledger = Ledger(tmp_path / "calls.sqlite")

    async def failing():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        asyncio.run(ledger.call(request(), failing))
    assert len(ledger) == 0 and ledger.lookup(request()) is None


def test_concurrent_callers_share_one_send_and_the_file_holds_no_secret(tmp_path):
    path, transport = tmp_path / "calls.sqlite", FakeTransport(delay=0.01)
    ledger = Ledger(path)

    async def many():
        reqs = [request(f"q{i % 5}", api_key=SECRET) for i in range(40)]
        return await asyncio.gather(*(ledger.call(r, lambda r=r: transport(r)) for r in reqs))

    answers = asyncio.run(many())
    assert len(transport.sent) == 5 and len(ledger) == 5  # identical requests in flight were sent once
    assert len({a["choices"][0]["message"]["content"] for a in answers}) == 5
    ledger.close()
    assert SECRET.encode() not in path.read_bytes()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        stored = db.execute("SELECT request, prompt_tokens, completion_tokens, latency_s FROM calls").fetchall()
    assert all(SECRET not in r[0] and "api_key" not in r[0] and r[1:3] == (10, 3) and r[3] >= 0.01 for r in stored)


def test_cost():
    assert cost(2000, 1000, 0.5) == 1.5
    assert cost(2000, 1000, (0.5, 2.0)) == 3.0


def test_answers_the_caller_rejects_are_not_recorded_and_raw_bodies_count_their_tokens(tmp_path):
    ledger = Ledger(tmp_path / "calls.sqlite")
    answers = iter([{"status": 503, "body": "busy"}, {"status": 200, "body": '{"usage": {"prompt_tokens": 7, "completion_tokens": 2}}'}])

    async def send():
        return next(answers)

    ok = lambda answer: answer["status"] == 200  # noqa: E731
    assert asyncio.run(ledger.call(request(), send, keep=ok))["status"] == 503 and len(ledger) == 0
    assert asyncio.run(ledger.call(request(), send, keep=ok))["status"] == 200 and len(ledger) == 1
    assert asyncio.run(ledger.call(request(), send, keep=ok))["status"] == 200  # replayed: the iterator is spent
    assert ledger.stats.sent == 2 and ledger.stats.replayed == 1 and ledger.stats.prompt_tokens == 14


def test_a_copy_opens_the_same_file(tmp_path):
    import copy
    import pickle

    ledger = Ledger(tmp_path / "calls.sqlite")
    first = run(ledger, request(), FakeTransport())
    for clone in (copy.deepcopy(ledger), pickle.loads(pickle.dumps(ledger))):
        assert clone.mode == "record-and-replay" and clone.lookup(request()) == first and clone.stats.sent == 0


# ----------------------------------------------------------------------------------------------
# wired into the LLM simulator, against the local server


def _play(url, ledger_path, mode, transcript, seeds=(3, 4)):
    import gymnasium as gym

    from agents.replies.baselines import make_reference_agent

    kwargs = {"base_url": url, "model": "sim-model", "api_key": SECRET, "max_retries": 1, "backoff_initial": 0.01, "ledger": str(ledger_path), "ledger_mode": mode}
    env = gym.make("SageDialogue-v0", scenarios="eval", simulator="openai", simulator_kwargs=kwargs, transcript_path=str(transcript), max_turns=3)
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            agent, done = make_reference_agent("empathic", seed), False
            while not done:
                _, _, terminated, truncated, info = env.step(agent(info["history"]))
                done = terminated or truncated
        return env.unwrapped.simulator
    finally:
        env.close()


def _without_clock(path):
    """The transcript lines, byte for byte, but for the wall-clock times of each dialogue."""
    return [re.sub(rb'"(started|finished)_at": [0-9.e+-]+', b"", line) for line in path.read_bytes().splitlines()]


def test_a_replayed_simulator_equals_the_recorded_one_with_the_server_stopped(tmp_path):
    from sage_gym.servers.simulator_server import run_server_in_thread

    ledger_path = tmp_path / "calls.sqlite"
    with run_server_in_thread() as url:
        recorded = _play(url, ledger_path, "record-and-replay", tmp_path / "recorded.jsonl")
    assert recorded.ledger.stats.sent == recorded.stats.calls > 0 and recorded.stats.prompt_tokens > 0
    replayed = _play(url, ledger_path, "replay", tmp_path / "replayed.jsonl")  # the server is gone
    assert _without_clock(tmp_path / "replayed.jsonl") == _without_clock(tmp_path / "recorded.jsonl")
    assert replayed.ledger.stats.replayed == recorded.ledger.stats.sent and replayed.ledger.stats.sent == 0
    assert SECRET.encode() not in ledger_path.read_bytes()
    with pytest.raises(LedgerMiss, match="sim-model"):
        _play(url, ledger_path, "replay", tmp_path / "other.jsonl", seeds=(5,))  # never recorded: a clear error


def test_a_replayed_evaluation_equals_the_recorded_one_with_the_server_stopped(tmp_path):
    from agents.evaluate import main
    from sage_gym.servers.simulator_server import run_server_in_thread

    def evaluate(url, *options):
        return main(["--agent", "empathic", "--simulator", f"openai:base_url={url},model=sim-model", "--limit", "3", "--max-turns", "3",
                     "--trials", "2", "--ledger", str(tmp_path / "calls.sqlite"), "--price-per-1k", "0.5", "--no-progress", "--no-plots", *options])

    with run_server_in_thread() as url:
        recorded = evaluate(url, "--output", str(tmp_path / "recorded"))
    replayed = evaluate(url, "--ledger-mode", "replay", "--output", str(tmp_path / "replayed"))  # the server is gone

    a, b = tmp_path / "recorded", tmp_path / "replayed"
    def summary(folder):  # the viewer line names the folder itself
        return [line for line in (folder / "summary.md").read_bytes().splitlines() if b"agents.view" not in line]

    assert summary(b) == summary(a)
    assert _without_clock(b / "transcripts.jsonl") == _without_clock(a / "transcripts.jsonl")
    strip_run = lambda report: json.dumps({k: v for k, v in report.items() if k != "run"}, sort_keys=True)  # noqa: E731
    assert strip_run(replayed) == strip_run(recorded)
    sent, again = recorded["run"]["simulator"], replayed["run"]["simulator"]
    assert sent["ledger"]["sent"] == sent["ledger"]["recorded"] == sent["calls"] > 0 and sent["prompt_tokens"] > 0 and sent["cost"] > 0
    assert again["ledger"]["sent"] == 0 and again["ledger"]["replayed"] == sent["calls"] and again["cost"] == 0.0
    assert again["prompt_tokens"] == sent["prompt_tokens"] and again["completion_tokens"] == sent["completion_tokens"]
    with pytest.raises(LedgerMiss, match="sim-model"):
        evaluate(url, "--ledger-mode", "replay", "--seed", "9", "--output", str(tmp_path / "other"))
    missed = tmp_path / "other" / "transcripts.jsonl"
    assert not missed.exists() or "LedgerMiss" not in missed.read_text()  # no dialogue written off as an error
