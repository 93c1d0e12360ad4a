"""The shipped scenario library and the checks that keep it honest."""

import dataclasses
import subprocess
import sys

import pytest

from sage_gym.resources import data_path
from sage_gym.scenario_checks import find_duplicates, validate_sets
from sage_gym.scenarios import ScenarioSet, load_split

MIN_PER_CELL = {"train": 10, "eval": 4}


@pytest.fixture(scope="module")
def splits():
    return load_split("train"), load_split("eval")


def test_shipped_library_validates(splits):
    train, evaluation = splits
    report = validate_sets([train, evaluation], [MIN_PER_CELL["train"], MIN_PER_CELL["eval"]])
    assert report.ok, "\n".join(report.errors[:20])
    assert len(train) >= 240 and len(evaluation) >= 96


def test_splits_share_no_persona_and_no_situation(splits):
    train, evaluation = splits
    assert not {s.persona.name for s in train} & {s.persona.name for s in evaluation}
    labelled = [("train", s) for s in train] + [("eval", s) for s in evaluation]
    assert find_duplicates(labelled) == []


def test_library_is_diverse(splits):
    everyone = [s for split in splits for s in split]
    ages = [s.persona.age for s in everyone]
    assert min(ages) <= 19 and max(ages) >= 75
    assert len({s.domain for s in everyone}) >= 10
    assert len({s.persona.occupation for s in everyone}) >= 150


def _edited_copy(s, new_id):
    story = s.background.story.replace(" the ", " that ", 2)
    return dataclasses.replace(
        s,
        id=new_id,
        persona=dataclasses.replace(s.persona, name=s.persona.name + " Jr", age=s.persona.age + 1),
        background=dataclasses.replace(s.background, story=story),
        first_message=s.first_message + " Anyway.",
    )


def test_near_duplicate_detector_catches_a_lightly_edited_copy(splits):
    original = splits[1][0]
    copy = _edited_copy(original, "copy-1")
    problems = find_duplicates([("a", original), ("b", copy)])
    assert any("near-duplicate situation" in p for p in problems), problems
    assert find_duplicates([("a", original), ("b", splits[1][1])]) == []


def test_leak_detector_catches_a_stated_intention(splits):
    venting = next(s for s in splits[1] if s.hidden_intention == "venting")
    leaky = dataclasses.replace(venting, id="leaky", first_message="I just need to vent for a minute, okay?")
    report = validate_sets([ScenarioSet([leaky], name="x")], library=False)
    assert any("states the hidden intention" in e for e in report.errors)


def test_validate_command_line():
    files = [str(data_path("personas", "train.jsonl")), str(data_path("personas", "eval.jsonl"))]
    out = subprocess.run(
        [sys.executable, "-m", "sage_gym.scenarios", "validate", *files, "--min-per-cell", "10", "4"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "| venting |" in out.stdout and out.stdout.strip().endswith("OK")


def test_validate_command_line_reports_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    out = subprocess.run([sys.executable, "-m", "sage_gym.scenarios", "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "bad.jsonl:1" in out.stderr


def test_docs_show_the_current_balance_tables(splits):
    from pathlib import Path

    from sage_gym.scenario_checks import balance_table, format_balance

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scenarios.md").read_text()
    for name, split in zip(("train", "eval"), splits):
        assert format_balance(balance_table(split), name) in doc
