"""The shipped scenario library and the checks that keep it honest."""

import dataclasses
import subprocess
import sys

import pytest

from sage_gym.resources import data_path
from sage_gym.scenarios.checks import find_duplicates, validate_sets
from sage_gym.scenarios import ScenarioSet, load_split

MIN_PER_CELL = {"train": 10, "eval": 4, "train-zh": 2, "eval-zh": 1}


@pytest.fixture(scope="module")
def splits():
    return load_split("train"), load_split("eval")


@pytest.fixture(scope="module")
def zh_splits():
    return load_split("train-zh"), load_split("eval-zh")


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


def test_docs_show_the_current_balance_tables(splits, zh_splits):
    from pathlib import Path

    from sage_gym.scenarios.checks import balance_table, format_balance

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scenarios.md").read_text()
    for name, split in zip(("train", "eval", "train-zh", "eval-zh"), splits + zh_splits):
        assert format_balance(balance_table(split), name) in doc


# ----------------------------------------------------------------------------------------------
# the Chinese library


def test_chinese_library_validates_with_the_english_one(splits, zh_splits):
    names = ("train", "eval", "train-zh", "eval-zh")
    report = validate_sets(list(splits + zh_splits), [MIN_PER_CELL[n] for n in names])
    assert report.ok, "\n".join(report.errors[:20])
    train, evaluation = zh_splits
    assert len(train) >= 48 and len(evaluation) >= 24
    assert {s.language for s in train} | {s.language for s in evaluation} == {"zh"}
    assert not {s.persona.name for s in train} & {s.persona.name for s in evaluation}


def test_chinese_library_is_diverse_and_written_in_chinese(zh_splits):
    from sage_gym.scenarios.sage_format import _has_cjk

    everyone = [s for split in zh_splits for s in split]
    ages = [s.persona.age for s in everyone]
    assert min(ages) <= 16 and max(ages) >= 75
    assert len({s.domain for s in everyone}) >= 15
    assert len({s.persona.occupation for s in everyone}) == len(everyone)
    for s in everyone:  # what the user says and how they say it is Chinese, not English left over
        for text in (s.first_message, s.persona.speaking_style, s.background.story, *s.background.details):
            assert _has_cjk(text), (s.id, text)


def _edited_chinese_copy(s, new_id):
    story = s.background.story.replace("，", "。", 3).replace("他", "她", 2)
    return dataclasses.replace(
        s,
        id=new_id,
        persona=dataclasses.replace(s.persona, name=s.persona.name + "二", age=s.persona.age + 1),
        background=dataclasses.replace(s.background, story=story),
        first_message=s.first_message + "算了。",
    )


def test_near_duplicate_detector_reads_chinese_by_characters(zh_splits):
    original = zh_splits[1][0]
    problems = find_duplicates([("a", original), ("b", _edited_chinese_copy(original, "copy-zh"))])
    assert any("near-duplicate situation" in p for p in problems), problems
    assert find_duplicates([("a", original), ("b", zh_splits[1][1])]) == []


@pytest.mark.parametrize(
    "intention, message",
    [
        ("venting", "我就想吐槽一下，你听着就行。"),
        ("concrete_advice", "你说我该怎么办啊？"),
        ("specific_praise", "你就夸夸我嘛。"),
        ("no_blame", "这不是我的错吧？"),
        ("others_motives", "你帮我分析一下他为什么这样。"),
        ("self_reflection", "我想好好反思一下。"),
        ("dialectical_analysis", "你从两方面分析一下。"),
        ("deep_empathy", "别只是安慰我。"),
    ],
)
def test_leak_detector_catches_a_stated_intention_in_chinese(zh_splits, intention, message):
    base = next(s for s in zh_splits[1] if s.hidden_intention == intention)
    assert validate_sets([ScenarioSet([base], name="x")], library=False).ok
    leaky = dataclasses.replace(base, id="leaky", first_message=message)
    report = validate_sets([ScenarioSet([leaky], name="x")], library=False)
    assert any("states the hidden intention" in e for e in report.errors), report.errors


def test_chinese_lengths_are_counted_in_characters(zh_splits):
    from sage_gym.scenarios.checks import check_completeness

    s = zh_splits[1][0]
    assert check_completeness(s, "zh") == []
    # the same story read as English would be far too short: the bounds follow the language
    assert any("background.story" in p for p in check_completeness(dataclasses.replace(s, language="en"), "en"))
    too_short = dataclasses.replace(s, background=dataclasses.replace(s.background, details=("太短了。",) * 4))
    assert any("background.details[0]" in p for p in check_completeness(too_short, "zh"))
    assert "use --schema-only" in check_completeness(dataclasses.replace(s, language="fr"), "fr")[0]


def test_validate_command_line_on_the_chinese_files():
    files = [str(data_path("personas", "train_zh.jsonl")), str(data_path("personas", "eval_zh.jsonl"))]
    out = subprocess.run(
        [sys.executable, "-m", "sage_gym.scenarios", "validate", *files, "--min-per-cell", "2", "1"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "| no_blame | 2 | 2 | 2 | 6 |" in out.stdout and out.stdout.strip().endswith("OK")
