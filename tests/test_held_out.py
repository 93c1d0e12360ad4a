"""Several agents under several simulators in one command: specs, scores, gaps, Kendall's tau."""

from __future__ import annotations

import json

import pytest

from agents.eval.held_out_simulators import HELD_OUT_JSON, HELD_OUT_MD, SimulatorSpec, held_out_summary, load_simulator_specs, parse_simulator_spec
from agents.evaluate import main
from sage_gym import make_simulator
from sage_gym.servers.simulator_server import run_server_in_thread


def test_simulator_specs():
    assert parse_simulator_spec("builtin") == SimulatorSpec("builtin", "builtin", {})
    spec = parse_simulator_spec("openai:base_url=http://h:1/v1,model=qwen,temperature=0.2")
    assert spec == SimulatorSpec("openai-qwen", "openai", {"base_url": "http://h:1/v1", "model": "qwen", "temperature": 0.2})
    assert parse_simulator_spec('big=openai:{"model": "m", "max_retries": 1}') == SimulatorSpec("big", "openai", {"model": "m", "max_retries": 1})
    assert parse_simulator_spec("openai", {"model": "x"}).kwargs == {"model": "x"}
    assert parse_simulator_spec("builtin-v1") == SimulatorSpec("builtin-v1", "builtin-v1", {})  # the calibrated user
    assert parse_simulator_spec("calibrated=builtin-v1").label == "calibrated"
    for bad in ("gpt", "openai:model", "builtin:seed=1", "builtin-v1:seed=1"):
        with pytest.raises(ValueError):
            parse_simulator_spec(bad)


def test_the_calibrated_user_evaluates_from_the_command_line(tmp_path):
    """`--simulator builtin-v1` scores an agent under the calibrated user (its manifest says so)."""
    report = main(["--agent", "empathic", "--limit", "1", "--max-turns", "2", "--no-progress", "--no-plots", "--simulator", "builtin-v1", "--output", str(tmp_path)])
    simulator = report["manifest"]["environment"]["simulator"]
    calibrated = make_simulator("builtin-v1").manifest()
    assert simulator["calibration"] and simulator["fitted"]  # what only the calibrated user reports
    assert simulator["version"] == calibrated["version"] != make_simulator("builtin").manifest()["version"]


def test_specs_from_a_file(tmp_path):
    path = tmp_path / "sims.json"
    path.write_text(json.dumps(["builtin", {"label": "server", "kind": "openai", "kwargs": {"model": "m"}}]))
    assert load_simulator_specs(path) == [SimulatorSpec("builtin", "builtin", {}), SimulatorSpec("server", "openai", {"model": "m"})]


def _report(score, per_scenario):
    return {"manifest": {"environment": {"simulator": {"model": "x"}}, "evaluation": {"bootstrap_samples": 200, "confidence": 0.95, "seed": 0}},
            "results": {"score": {"mean": score, "ci": [score - 1, score + 1]}}, "reliability": {"per_scenario": per_scenario}}


def test_summary_by_hand():
    scenarios = [f"s{i}" for i in range(10)]
    reports = {
        "a": {"one": _report(60, {s: [60.0] for s in scenarios}), "two": _report(40, {s: [40.0] for s in scenarios})},
        "b": {"one": _report(50, {s: [50.0] for s in scenarios}), "two": _report(50, {s: [50.0] for s in scenarios})},
        "c": {"one": _report(10, {s: [10.0] for s in scenarios}), "two": _report(20, {s: [20.0] for s in scenarios})},
    }
    summary = held_out_summary(reports, ["one", "two"])
    assert summary["agents"]["a"]["two"]["gap"]["difference"] == -20 and summary["agents"]["a"]["two"]["gap"]["beyond_noise"]
    assert not summary["agents"]["b"]["two"]["gap"]["beyond_noise"]
    # order a > b > c under "one", b > a > c under "two": 2 of 3 pairs agree
    assert summary["kendall_tau"] == {"one vs two": round(1 / 3, 4)}


def test_three_agents_under_the_builtin_simulator_and_the_local_server(tmp_path, capsys):
    with run_server_in_thread() as url:
        summary = main([
            "--agent", "empathic", "--agent", "solution", "--agent", "dismissive",
            "--simulator", "builtin", "--simulator", f"server=openai:base_url={url},model=sim-model",
            "--scenarios", "eval", "--limit", "6", "--max-turns", "4", "--output", str(tmp_path), "--no-progress", "--no-plots",
        ])
    assert summary["simulators"] == ["builtin", "server"] and set(summary["agents"]) == {"empathic", "solution", "dismissive"}
    for name, rows in summary["agents"].items():
        assert (tmp_path / name / "builtin" / "report.json").is_file() and (tmp_path / name / "server" / "report.json").is_file()
        assert rows["server"]["simulator"] == "sim-model" and "gap" in rows["server"] and "gap" not in rows["builtin"]
    tau = summary["kendall_tau"]["builtin vs server"]
    assert tau is not None and -1 <= tau <= 1
    assert json.loads((tmp_path / HELD_OUT_JSON).read_text()) == summary
    assert "Kendall" in (tmp_path / HELD_OUT_MD).read_text() and "gap server" in capsys.readouterr().out
