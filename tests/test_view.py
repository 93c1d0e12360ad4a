"""The data the viewer page is built from: folders found (a run, a parent with `latest`, an
evaluation), rows and flags, the manifest stored once, scenario cards joined (or said to be
missing), unknown fields kept, no secret, inline data that cannot break out of its script block,
and the command line. The page itself is tested in a browser in tests/test_view_browser.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from agents.view.cli import main
from agents.view.data import (
    SALAD,
    ViewerError,
    dialogue_row,
    filter_rows,
    join_scenarios,
    load_folder,
    page_data,
    resolve_folder,
    search_text,
)
from agents.view.page import inlined_payload, render_page, script_json, unpack
from sage_gym.transcripts import read_jsonl
from tests.tiny import SMALL, one_thread, tokenizer  # noqa: F401  (fixtures)

TRAINING_LOG: list[str] = []

# ----------------------------------------------------------------------------------------------
# real folders: a two-step training run of a tiny model and a reference agent's evaluation


@pytest.fixture(scope="module")
def training_run(tokenizer, tmp_path_factory) -> Path:  # noqa: F811
    """A real GRPO run (2 steps x 4 dialogues of a tiny random model against the built-in user)."""
    from agents.learn.config import TrainConfig
    from agents.learn.grpo import GRPO
    from agents.policy.model import Policy
    from agents.learn.tiny_model import system_prompts, tiny_random_model
    from agents.learn.trainer import Trainer

    out = tmp_path_factory.mktemp("runs") / "grpo"
    cfg = TrainConfig.from_options(model="in-memory", template="direct", steps=2, group_size=2, scenarios_per_step=2, max_turns=3, max_new_tokens=12,
                      lr=1e-3, output_dir=str(out), save_every=0, progress=False, tensorboard=False, transcripts=True, scenarios="train", scenario_limit=4)
    policy = Policy.from_model(tiny_random_model(tokenizer, SMALL, seed=0), tokenizer, system_prompt=system_prompts()["direct"])
    trainer = Trainer(cfg, algorithm=GRPO, policy=policy, log=TRAINING_LOG.append)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return out


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Path:
    """A real evaluation folder: the empathic reference agent, 4 eval scenarios x 2 trials."""
    from agents.evaluate import main as evaluate

    out = tmp_path_factory.mktemp("evaluations") / "empathic"
    evaluate(["--agent", "empathic", "--limit", "4", "--trials", "2", "--output", str(out), "--no-progress", "--no-plots"])
    return out


# ----------------------------------------------------------------------------------------------
# finding the folder


def test_a_run_folder_its_transcripts_file_and_a_parent_with_latest_all_resolve(training_run, tmp_path) -> None:
    assert resolve_folder(training_run) == (training_run, "")
    assert resolve_folder(training_run / "transcripts.jsonl") == (training_run, "")

    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "20250101-000000").mkdir()  # an older run with no dialogues yet
    (parent / "latest").symlink_to(training_run, target_is_directory=True)
    assert resolve_folder(parent)[0] == training_run.resolve()

    (parent / "latest").unlink()
    os.symlink(training_run, parent / "20250102-000000")
    (parent / "latest").write_text("20250102-000000\n")  # where symlinks are not allowed
    folder, note = resolve_folder(parent)
    assert folder == training_run.resolve() and "latest" in note

    (parent / "latest").unlink()
    assert resolve_folder(parent)[0].name == "20250102-000000"  # no latest: the newest run with dialogues


def test_a_folder_with_no_dialogues_is_refused_with_its_cause(tmp_path, capsys) -> None:
    with pytest.raises(ViewerError, match="no transcripts.jsonl here"):
        resolve_folder(tmp_path)
    (tmp_path / "latest").write_text("gone")
    with pytest.raises(ViewerError, match="names 'gone'"):
        resolve_folder(tmp_path)
    assert main([str(tmp_path / "missing")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_kinds_and_a_torn_line_is_skipped_not_fatal(training_run, evaluation, tmp_path, caplog) -> None:
    assert load_folder(training_run).kind == "training"
    assert load_folder(evaluation).kind == "evaluation"
    copy = tmp_path / "eval"
    copy.mkdir()
    lines = (evaluation / "transcripts.jsonl").read_bytes().splitlines(keepends=True)
    (copy / "transcripts.jsonl").write_bytes(b"".join(lines) + lines[0][: len(lines[0]) // 2])  # a kill mid-write
    assert len(load_folder(copy).records) == len(lines)
    assert "torn" in caplog.text


# ----------------------------------------------------------------------------------------------
# rows, flags, vocabularies


def _record(**turn_analysis) -> dict:
    return {
        "scenario_id": "s1", "hidden_intention": "venting", "character_type": "passive", "seed": 7, "initial_emotion": 40, "final_emotion": 25,
        "outcome": "truncated", "first_message": "Hi.",
        "turns": [
            {"turn": 1, "agent_reply": "It's okay to feel this way.", "user_reply": "Hm.", "emotion": 35, "analysis": {"strategies": ["validate"], "flags": ["spliced"], **turn_analysis}},
            {"turn": 2, "agent_reply": "You could try a plan?", "user_reply": "No.", "emotion": 25, "analysis": {"strategies": [], "flags": ["llm_flag_we_never_saw"]}},
        ],
    }


def test_a_row_has_every_flag_of_the_simulator_salad_derived_and_the_taggers_strategies() -> None:
    row = dialogue_row(_record())
    assert row["flags"] == sorted({"spliced", "llm_flag_we_never_saw", SALAD})  # unknown flags are kept
    assert row["change"] == -15 and row["turns"] == 2
    assert row["analysis_strategies"] == ["validate"]
    assert set(row["tagger_strategies"]) >= {"validation", "advice", "questioning"}  # tagged from the reply where the record has none


def test_unknown_analysis_and_record_fields_reach_the_page_data() -> None:
    from agents.view.data import Folder

    record = {**_record(mood_vector=[0.1, 0.9]), "llm_extra": {"cost": 1}}
    data = page_data([Folder(Path("/nowhere/run"), "evaluation", [record])])
    stored = data["dialogues"][0]["record"]
    assert stored["turns"][0]["analysis"]["mood_vector"] == [0.1, 0.9] and stored["llm_extra"] == {"cost": 1}
    # no manifest and no scenario source: the page says what it shows instead
    assert "only the fields each record carries" in data["sources"][0]["scenario_note"]


def test_the_python_filter_keeps_what_each_rule_says() -> None:
    rows = []
    for record in (_record(), {**_record(), "hidden_intention": "concrete_advice", "turns": []}):
        rows.append({**dialogue_row(record), "text": search_text(record)})
    assert len(filter_rows(rows, intention="venting")) == 1
    assert len(filter_rows(rows, flag=SALAD)) == 1
    assert len(filter_rows(rows, strategy="advice")) == 1
    assert len(filter_rows(rows, text="OKAY to feel")) == 1
    assert len(filter_rows(rows, character="passive")) == 2


# ----------------------------------------------------------------------------------------------
# page data from real folders


def test_the_manifest_is_stored_once_and_an_export_gives_back_the_jsonl(training_run) -> None:
    records = list(read_jsonl(training_run / "transcripts.jsonl"))
    data = page_data([load_folder(training_run)])
    assert len(data["manifests"]) == 1 < len(records)
    assert all("manifest" not in d["record"] for d in data["dialogues"])
    rebuilt = [{**d["record"], "manifest": data["manifests"][d["manifest"]]} for d in data["dialogues"]]
    assert rebuilt == records  # what the page's export writes, record for record
    # training records carry no tagger strategies: the viewer tags each turn's reply
    assert all(len(d["tags"]) == len(d["record"]["turns"]) for d in data["dialogues"])
    glance = data["sources"][0]["glance"]
    assert [w["label"] for w in glance["windows"]] == ["first step (1)", "last step (2)"]
    assert [row["step"] for row in glance["curve"] if "return" in row] == [1, 2]


def test_scenario_cards_are_joined_from_the_source_the_run_names(training_run, evaluation) -> None:
    data = page_data([load_folder(training_run), load_folder(evaluation)])
    wanted = {d["row"]["scenario"] for d in data["dialogues"]}
    assert set(data["scenarios"]) == wanted  # each once, only those played
    assert all(data["scenarios"][s]["persona"]["name"] for s in wanted)
    assert "train.jsonl[:4]" in data["sources"][0]["scenario_note"] and "WARNING" not in data["sources"][0]["scenario_note"]
    assert all(d["tags"] is None for d in data["dialogues"] if d["source"] == 1)  # the evaluation's own tagger strategies are used


def test_a_missing_or_changed_scenario_source_is_said(evaluation, tmp_path) -> None:
    cards, note = join_scenarios({"name": str(tmp_path / "gone.jsonl")}, {"eval-001"})
    assert cards == {} and "not found" in note and "only the fields each record carries" in note
    cards, note = join_scenarios({"name": "eval", "sha256": "0" * 64}, {"eval-001"})
    assert set(cards) == {"eval-001"} and "WARNING" in note and "changed" in note


def test_no_secret_reaches_the_page(evaluation, tmp_path) -> None:
    folder = tmp_path / "eval"
    folder.mkdir()
    planted = "sk-planted-0123456789abcdef"
    with (folder / "transcripts.jsonl").open("w") as out:
        for record in read_jsonl(evaluation / "transcripts.jsonl"):
            record["manifest"]["simulator"]["api_key"] = planted
            out.write(json.dumps(record) + "\n")
    (folder / "manifest.json").write_text(json.dumps({"agent": {"name": "x", "headers": {"Authorization": f"Bearer {planted}"}}}))
    data = page_data([load_folder(folder)])
    assert planted not in json.dumps(data)


# ----------------------------------------------------------------------------------------------
# the page file


def test_hostile_text_cannot_leave_the_data_block_and_comes_back_intact(evaluation, tmp_path) -> None:
    hostile = "</script><script>alert(1)</script><!-- \u2028\u2029 <b>bold</b> & \ud800"
    folder = tmp_path / "eval"
    folder.mkdir()
    with (folder / "transcripts.jsonl").open("w") as out:
        for record in read_jsonl(evaluation / "transcripts.jsonl"):
            record["turns"][0]["agent_reply"] = hostile
            out.write(json.dumps(record) + "\n")
    data = page_data([load_folder(folder)])
    page = render_page(data, title=hostile)
    template = (Path(__file__).parents[1] / "agents" / "view" / "template.html").read_text()
    assert page.count("</script") == template.count("</script")  # the template's own closing tags, nothing more
    assert "<!--" not in page and "\u2028" not in page and "<script>alert" not in page
    assert unpack(inlined_payload(page)) == json.loads(json.dumps(data))
    assert "\\u003c/script\\u003e" in script_json(hostile)


def test_the_command_writes_one_offline_page_and_prints_its_path(evaluation, training_run, capsys) -> None:
    assert main([str(evaluation)]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written == evaluation / "dialogues.html"
    page = written.read_text()
    # no network: nothing loaded from elsewhere, and the page's policy forbids it
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "default-src 'none'" in page
    assert main([str(evaluation), str(evaluation), "--output", str(evaluation / "pair.html")]) == 0
    assert len(unpack(inlined_payload((evaluation / "pair.html").read_text()))["sources"]) == 2


def test_the_evaluation_summary_and_the_training_summary_name_the_viewer_command(evaluation, training_run) -> None:
    assert f"python -m agents.view {evaluation}" in (evaluation / "summary.md").read_text()
    assert f"python -m agents.view {training_run}" in "\n".join(TRAINING_LOG)  # the closing summary
