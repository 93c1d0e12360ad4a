"""Trials, pass^k and --compare through the evaluator, on the built-in simulator."""

from __future__ import annotations

import json

import pytest

from agents.eval.agent_api import ReferenceAgent
from agents.eval.evaluate import TRANSCRIPTS, EvalSettings, evaluate
from agents.eval.trust import ManifestMismatch
from agents.evaluate import main
from sage_gym.transcripts import read_jsonl

FAST = dict(progress=False, plots=False)


def test_trials_give_pass_hat_k_computed_by_hand(tmp_path):
    settings = EvalSettings(scenarios="eval", limit=6, episodes_per_scenario=3)
    report = evaluate(ReferenceAgent("empathic"), tmp_path / "e", settings, **FAST)
    records = list(read_jsonl(tmp_path / "e" / TRANSCRIPTS))
    assert len(records) == 18 and {r["repeat"] for r in records} == {0, 1, 2}
    finals: dict[str, list[int]] = {}
    for r in sorted(records, key=lambda r: r["repeat"]):
        finals.setdefault(r["scenario_id"], []).append(r["final_emotion"])
    assert len({r["seed"] for r in records}) == 18  # every trial its own seed
    assert any(len(set(v)) > 1 for v in finals.values())  # and the trials really differ

    section = report["reliability"]
    assert section["trials"] == 3 and section["per_scenario"] == {k: [float(x) for x in v] for k, v in finals.items()}
    all_success = sum(all(x >= 100 for x in v) for v in finals.values()) / 6
    all_above_failure = sum(all(x >= 10 for x in v) for v in finals.values()) / 6
    assert section["pass_hat_k"]["3"] == {"success": round(all_success, 4), "no_failure": round(all_above_failure, 4)}
    assert section["pass_hat_k"]["1"]["success"] == pytest.approx(report["results"]["success_share"]["mean"], abs=1e-4)
    low, high = section["score"]["ci"]
    assert low <= report["results"]["score"]["mean"] == section["score"]["mean"] <= high
    assert "pass^3" in (tmp_path / "e" / "summary.md").read_text()

    # resuming keeps the trials apart: the trial index is part of each dialogue's key
    lines = (tmp_path / "e" / TRANSCRIPTS).read_text().splitlines(keepends=True)
    (tmp_path / "e" / TRANSCRIPTS).write_text("".join(lines[:7]))
    resumed = evaluate(ReferenceAgent("empathic"), tmp_path / "e", settings, **FAST)
    assert resumed["run"]["resumed_from"] == 7
    assert {k: v for k, v in resumed.items() if k != "run"} == {k: v for k, v in report.items() if k != "run"}


def test_compare_flags_a_real_difference_and_calls_two_seeds_a_tie(tmp_path, capsys):
    common = ["--scenarios", "eval", "--limit", "24", "--trials", "2", "--no-progress", "--no-plots"]
    main(["--agent", "empathic", "--output", str(tmp_path / "e0"), *common])
    main(["--agent", "empathic", "--output", str(tmp_path / "e1"), "--seed", "1", *common])
    main(["--agent", "solution", "--output", str(tmp_path / "s0"), *common])
    capsys.readouterr()
    main(["--compare", str(tmp_path / "e0"), str(tmp_path / "s0"), str(tmp_path / "e1")])
    pairs = capsys.readouterr().out.split("bootstrap over scenarios):")[1]
    rows = {line.split("|")[1].strip(): line for line in pairs.splitlines() if " vs " in line}
    assert "a better" in rows["1:empathic vs 2:solution"]
    assert "tie (within the noise)" in rows["1:empathic vs 3:empathic"]
    assert "b better" in rows["2:solution vs 3:empathic"]

    # another rule set: refused, unless forced
    main(["--agent", "empathic", "--output", str(tmp_path / "short"), "--max-turns", "3", *common])
    with pytest.raises(ManifestMismatch, match="rules"):
        main(["--compare", str(tmp_path / "e0"), str(tmp_path / "short")])
    main(["--compare", str(tmp_path / "e0"), str(tmp_path / "short"), "--force"])
    assert "1:empathic vs 2:empathic" in capsys.readouterr().out


def test_a_report_without_per_scenario_results_is_named(tmp_path):
    evaluate(ReferenceAgent("empathic"), tmp_path / "a", EvalSettings(limit=2, max_turns=2), **FAST)
    evaluate(ReferenceAgent("solution"), tmp_path / "b", EvalSettings(limit=2, max_turns=2), **FAST)
    old = json.loads((tmp_path / "b" / "report.json").read_text())
    del old["reliability"]
    (tmp_path / "b" / "report.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="report 2 has no per-scenario results"):
        main(["--compare", str(tmp_path / "a"), str(tmp_path / "b")])
