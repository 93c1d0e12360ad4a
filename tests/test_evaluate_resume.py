"""Evaluation runs that are interrupted or fail, and what they leave on disk: torn lines, kill -9,
a simulator that was down, API keys, a refused key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agents.eval.agent_api import OpenAIChatAgent, ReferenceAgent
from agents.replies.endpoint import AgentAuthError
from agents.eval.evaluate import EvalSettings, evaluate
from agents.replies.strategies import LLMStrategyJudge
from agents.evaluate import cli
from sage_gym.scenarios import write_scenarios
from sage_gym.servers.simulator_server import DEFAULT_MODEL, run_server_in_thread
from tests.conftest import make_scenario
from tests.test_strategies import fake_chat_endpoint

FAST = dict(progress=False, plots=False)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "eight.jsonl"
    intentions = ["venting", "concrete_advice", "specific_praise", "venting"]
    write_scenarios([make_scenario(f"r-{i}-{c}", intention=intentions[i], character=c) for i in range(4) for c in ("negative", "passive")], path)
    return path


def without_run(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "run"}


def stored_keys(folder: Path) -> list[tuple[str, int]]:
    return [(r["scenario_id"], r["repeat"]) for r in map(json.loads, (folder / "transcripts.jsonl").read_text().splitlines())]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def openai_simulator(url: str, **options) -> str:
    return "openai:" + json.dumps({"base_url": url, "model": DEFAULT_MODEL, **options})


def test_a_torn_last_line_is_cut_and_its_dialogue_played_again(tmp_path, scenarios):
    settings = EvalSettings(scenarios=str(scenarios), max_turns=3, num_envs=3)
    whole = evaluate(ReferenceAgent("random"), tmp_path / "whole", settings, **FAST)
    evaluate(ReferenceAgent("random"), tmp_path / "torn", settings, **FAST)
    path = tmp_path / "torn" / "transcripts.jsonl"
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last + (len(data) - last) // 2])  # killed halfway through writing the last record

    again = evaluate(ReferenceAgent("random"), tmp_path / "torn", settings, **FAST)

    assert again["run"]["resumed_from"] == 7 and again["run"]["dialogues_this_run"] == 1
    assert without_run(again) == without_run(whole)
    assert path.read_bytes().endswith(b"\n") and sorted(stored_keys(tmp_path / "torn")) == sorted(stored_keys(tmp_path / "whole"))


def test_an_evaluation_killed_mid_run_resumes_to_the_same_report(tmp_path, scenarios):
    with run_server_in_thread(latency_ms=40) as url:  # slow enough to be killed part-way
        args = ["--agent", "empathic", "--scenarios", str(scenarios), "--max-turns", "3", "--num-envs", "2", "--no-progress", "--no-plots",
                "--simulator", openai_simulator(url)]
        killed = tmp_path / "killed"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen([sys.executable, "-m", "agents.evaluate", *args, "--output", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        transcripts, deadline = killed / "transcripts.jsonl", time.monotonic() + 120
        try:
            while not (transcripts.exists() and transcripts.read_bytes().count(b"\n") >= 2):
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the evaluation wrote no dialogue in time"
                time.sleep(0.005)
        finally:
            process.kill()  # SIGKILL: no handler, no cleanup, as a crash or kill -9
            process.wait()
            process.stderr.close()
        assert 2 <= len(stored_keys(killed)) < 8 and not (killed / "report.json").exists()

        assert cli([*args, "--output", str(killed)]) == 0
        assert cli([*args, "--output", str(tmp_path / "whole")]) == 0

    resumed, whole = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("killed", "whole"))
    assert resumed["run"]["resumed_from"] >= 2 and whole["results"]["n"] == 8
    assert without_run(resumed) == without_run(whole)
    assert sorted(stored_keys(killed)) == sorted(stored_keys(tmp_path / "whole"))


def test_dialogues_that_failed_against_a_stopped_server_are_played_again(tmp_path, scenarios, capsys):
    port = free_port()
    simulator = openai_simulator(f"http://127.0.0.1:{port}/v1", max_retries=0)
    args = ["--agent", "empathic", "--scenarios", str(scenarios), "--limit", "4", "--max-turns", "2", "--no-progress", "--no-plots", "--simulator", simulator]
    out = tmp_path / "run"

    assert cli([*args, "--output", str(out)]) == 1  # nothing listens on the port yet
    message = capsys.readouterr().err.strip().splitlines()
    assert message == ["python -m agents.evaluate: 4 dialogue(s) ended in an error and are left out of the scores; run the same command again to retry them"]
    failed = json.loads((out / "report.json").read_text())
    assert failed["results"]["n"] == 0 and len(failed["errors"]) == 4 and all("Connect" in e["error"] for e in failed["errors"])
    error_lines = (out / "transcripts.jsonl").read_text()

    with run_server_in_thread(port=port):
        assert cli([*args, "--output", str(out), "--no-retry-errors"]) == 1  # the errors are kept as they are
        kept = json.loads((out / "report.json").read_text())
        assert kept["run"]["dialogues_this_run"] == 0 and len(kept["errors"]) == 4

        assert cli([*args, "--output", str(out)]) == 0
        assert cli([*args, "--output", str(tmp_path / "fresh")]) == 0

    retried, fresh = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("run", "fresh"))
    assert retried["run"]["errors_retried"] == 4 and retried["errors"] == [] and retried["results"]["n"] == 4
    assert without_run(retried) == without_run(fresh)
    assert len(stored_keys(out)) == len(set(stored_keys(out))) == 4  # each dialogue once: the error records are gone

    # killed after the retried records were written, before the old ones were dropped: the next run drops them
    (out / "transcripts.jsonl").write_text(error_lines + (out / "transcripts.jsonl").read_text())
    assert cli([*args, "--output", str(out)]) == 0
    assert len(stored_keys(out)) == 4 and json.loads((out / "report.json").read_text())["results"] == fresh["results"]


def test_no_key_reaches_any_file_the_evaluation_writes(tmp_path, scenarios, monkeypatch):
    secrets = {
        "simulator": "sk-simulator-0123456789", "simulator_header": "sim-header-secret-4711",
        "agent": "sk-agent-0123456789", "agent_header": "agent-header-secret-4711", "agent_url": "urlpassword4711",
        "judge": "sk-judge-0123456789",
    }
    monkeypatch.setenv("SAGE_TEST_JUDGE_KEY", secrets["judge"])

    def respond(request):
        if request["model"] == "judge-model":
            return '{"strategies": ["deep_empathy"]}'
        return "That sounds really hard. What has been the hardest part for you?"

    out = tmp_path / "out"
    with run_server_in_thread(api_key=secrets["simulator"]) as sim_url, fake_chat_endpoint(respond) as (agent_url, requests):
        agent = OpenAIChatAgent(
            agent_url.replace("http://", f"http://user:{secrets['agent_url']}@"), "agent-model",
            api_key=secrets["agent"], headers={"X-Api-Key": secrets["agent_header"]},
        )
        judge = LLMStrategyJudge(agent_url, "judge-model", api_key_env="SAGE_TEST_JUDGE_KEY")
        simulator_kwargs = {
            "base_url": sim_url, "model": DEFAULT_MODEL, "api_key": secrets["simulator"], "headers": {"X-Trace-Token": secrets["simulator_header"]},
            "ledger": str(out / "calls.sqlite"),  # the simulator's requests and answers, kept in the folder too
        }
        settings = EvalSettings(scenarios=str(scenarios), simulator="openai", simulator_kwargs=simulator_kwargs, limit=3, max_turns=2)
        report = evaluate(agent, out, settings, judge=judge, progress=False)

    # the keys were used: the simulator's server demands its key, and the endpoint saw the others
    assert report["results"]["n"] == 3 and report["errors"] == []
    agent_calls = [r for r in requests if r["model"] == "agent-model"]
    assert agent_calls and all(r["headers"]["authorization"] == f"Bearer {secrets['agent']}" and r["headers"]["x-api-key"] == secrets["agent_header"] for r in agent_calls)
    assert any(r["headers"]["authorization"] == f"Bearer {secrets['judge']}" for r in requests if r["model"] == "judge-model")
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in written} >= {"report.json", "transcripts.jsonl", "summary.md", "manifest.json", "emotion_trajectories.png", "calls.sqlite"}
    assert report["run"]["simulator"]["ledger"]["recorded"] > 0
    for path in written:
        data = path.read_bytes()
        for name, secret in secrets.items():
            assert secret.encode() not in data, f"the {name} secret is in {path.name}"


def test_a_refused_agent_key_fails_at_once_in_one_line_without_the_key(tmp_path, scenarios, monkeypatch, capsys):
    from agents.cli import run_main

    monkeypatch.setenv("SAGE_TEST_AGENT_KEY", "sk-wrong-0123456789")
    with run_server_in_thread(api_key="sk-right-0123456789") as url:  # it echoes a wrong key in its 401, like some real servers
        status = run_main(
            lambda: cli(["--agent", "openai", "--base-url", url, "--model", "agent-model", "--api-key-env", "SAGE_TEST_AGENT_KEY",
                         "--scenarios", str(scenarios), "--limit", "1", "--max-turns", "2", "--no-progress", "--no-plots",
                         "--output", str(tmp_path / "run")]),
            "python -m agents.evaluate",
        )
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as answer:
            served = json.load(answer)
        with pytest.raises(AgentAuthError, match="401"):
            evaluate(OpenAIChatAgent(url, "agent-model", api_key="sk-wrong-0123456789", max_retries=5), tmp_path / "direct", EvalSettings(scenarios=str(scenarios), limit=1), **FAST)

    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and served["requests"] == 1  # one request: a 401 is never retried
    assert lines[0].startswith("python -m agents.evaluate: error: 'agent-model' at " + url) and "401" in lines[0] and "SAGE_TEST_AGENT_KEY" in lines[0]
    assert "0123456789" not in lines[0]


def test_keys_an_agent_or_a_simulator_reports_in_its_manifest_are_redacted(tmp_path, scenarios):
    from sage_gym.simulators import BuiltinSimulator

    class CarelessSimulator(BuiltinSimulator):
        def manifest(self):
            return {**super().manifest(), "client": {"api_key": "sk-simulator-0123456789", "headers": {"Authorization": "Bearer tok-4711-sim"}}}

    class CarelessAgent(ReferenceAgent):
        def manifest(self):
            return {**super().manifest(), "kwargs": {"openai_api_key": "sk-agent-0123456789", "hf_token": "hf_4711secret"}}

    settings = EvalSettings(scenarios=str(scenarios), simulator=CarelessSimulator(), limit=3, max_turns=2)
    report = evaluate(CarelessAgent("empathic"), tmp_path, settings, **FAST)
    again = evaluate(CarelessAgent("empathic"), tmp_path, settings, **FAST)  # the redacted manifest still matches: it resumes

    assert again["run"]["dialogues_this_run"] == 0 and again["results"] == report["results"]
    assert report["manifest"]["agent"]["kwargs"] == {"openai_api_key": "<redacted>", "hf_token": "<redacted>"}
    assert report["manifest"]["environment"]["simulator"]["client"]["headers"] == {"Authorization": "<redacted>"}
    for path in tmp_path.rglob("*"):
        for secret in ("0123456789", "4711"):
            assert secret.encode() not in path.read_bytes(), path.name


def test_several_agents_under_a_stopped_server_exit_with_an_error_count(tmp_path, scenarios, capsys):
    simulator = openai_simulator(f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    status = cli(["--agent", "empathic", "--agent", "solution", "--scenarios", str(scenarios), "--limit", "2", "--max-turns", "2",
                  "--no-progress", "--no-plots", "--simulator", "builtin", "--simulator", simulator, "--output", str(tmp_path)])
    assert status == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m agents.evaluate: 4 dialogue(s) ended in an error and are left out of the scores; run the same command again to retry them"
    ]
    summary = json.loads((tmp_path / "held_out.json").read_text())  # written all the same, the gaps unknown rather than a crash
    assert all(rows["openai-sage_gym.builtin"]["errors"] == 2 and rows["openai-sage_gym.builtin"]["gap"] is None for rows in summary["agents"].values())
    assert all(tau is None for tau in summary["kendall_tau"].values()) and "n/a" in (tmp_path / "held_out.md").read_text()
