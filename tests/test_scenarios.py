import json

import pytest

from sage_gym.scenarios import (
    CHARACTER_TYPES,
    HIDDEN_INTENTIONS,
    SAGE_TASKS,
    SAGE_THEME_MARKER,
    Scenario,
    ScenarioError,
    ScenarioSet,
    from_sage,
    load_scenarios,
    load_split,
    to_sage,
    write_scenarios,
)
from tests.conftest import make_scenario


def test_record_round_trip(tmp_path, small_set):
    path = tmp_path / "s.jsonl"
    write_scenarios(small_set, path)
    loaded = load_scenarios(path)
    assert list(loaded) == list(small_set)
    assert loaded.sha256 == small_set.sha256


def test_scenarios_are_immutable(scenario):
    with pytest.raises(AttributeError):
        scenario.id = "other"
    with pytest.raises(TypeError):
        scenario.extras["x"] = 1


@pytest.mark.parametrize("split", ["train", "eval"])
def test_shipped_splits_cover_every_cell(split):
    scenarios = load_split(split)
    cells = {(s.hidden_intention, s.character_type) for s in scenarios}
    assert cells == {(i, c) for i in HIDDEN_INTENTIONS for c in CHARACTER_TYPES}


def test_sampling_is_deterministic_by_seed(small_set):
    assert [small_set.sample(seed=s).id for s in range(20)] == [small_set.sample(seed=s).id for s in range(20)]
    assert len({small_set.sample(seed=s).id for s in range(200)}) > 10


def _write_lines(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _good_record(**changes):
    record = make_scenario().to_dict()
    record.update(changes)
    return record


@pytest.mark.parametrize(
    "record, field",
    [
        (_good_record(character_type="grumpy"), "character_type"),
        (_good_record(hidden_intention="world_peace"), "hidden_intention"),
        ({k: v for k, v in _good_record().items() if k != "first_message"}, "first_message"),
        (_good_record(persona={**_good_record()["persona"], "age": "old"}), "persona.age"),
        (_good_record(background={**_good_record()["background"], "details": ["ok", 3]}), "background.details[1]"),
        (_good_record(colour="blue"), "colour"),
        (_good_record(first_message="   "), "first_message"),
    ],
)
def test_validation_errors_name_file_line_and_field(tmp_path, record, field):
    good = json.dumps(_good_record(id="fine"))
    path = _write_lines(tmp_path, [good, json.dumps(record)])
    with pytest.raises(ScenarioError) as err:
        load_scenarios(path)
    assert f"{path}:2" in str(err.value)
    assert f"'{field}'" in str(err.value)


def test_malformed_json_names_the_line(tmp_path):
    path = _write_lines(tmp_path, [json.dumps(_good_record()), "{not json"])
    with pytest.raises(ScenarioError, match=r"bad\.jsonl:2: invalid JSON"):
        load_scenarios(path)


def test_duplicate_ids_and_unknown_ids(tmp_path, small_set):
    with pytest.raises(ScenarioError, match="duplicate scenario id"):
        ScenarioSet([make_scenario("a"), make_scenario("a")])
    with pytest.raises(KeyError, match="unknown scenario id 'nope'"):
        small_set.get("nope")


def _sage_record(task: str, main_cha: str = "回避型", lang: str = "zh") -> dict:
    scene = "小王在公司加班三个月，项目却被同事抢了功劳。" if lang == "zh" else "Wang worked overtime for three months; a colleague took the credit."
    return {
        "id": "sage-1",
        "player": "姓名：小王\n年龄：28\n性别：男\n职业：程序员" if lang == "zh" else "name: Wang, age: 28, job: programmer",
        "scene": scene + SAGE_THEME_MARKER + task,
        "main_cha": main_cha,
        "cha_group": ["敏感", "内向", "固执"],
        "task": task,
        "first_talk": "唉，今天真是糟透了。" if lang == "zh" else "Ugh, today was awful.",
    }


@pytest.mark.parametrize("task, intention", list(SAGE_TASKS.items()))
def test_sage_import_maps_all_intentions(task, intention):
    s = from_sage(_sage_record(task))
    assert s.hidden_intention == intention
    assert s.character_type == "avoidant"
    assert s.language == "zh"
    assert SAGE_THEME_MARKER not in s.background.story  # the hidden theme stays out of the story
    assert s.persona.name == "小王" and s.persona.age == 28
    assert "unrecognised" not in s.extras


@pytest.mark.parametrize("main_cha, expected", [("负面型", "negative"), ("被动型", "passive"), ("回避型", "avoidant"), ("Negative", "negative")])
def test_sage_import_maps_character_types(main_cha, expected):
    assert from_sage(_sage_record(next(iter(SAGE_TASKS)), main_cha)).character_type == expected


def test_sage_import_round_trip():
    record = _sage_record(list(SAGE_TASKS)[5], "负面型")
    s = from_sage(record)
    back = to_sage(s)
    assert back["task"] == record["task"] and back["main_cha"] == record["main_cha"]
    assert back["first_talk"] == record["first_talk"] and back["cha_group"] == record["cha_group"]
    assert from_sage(back) == s


def test_sage_import_reports_what_it_did_not_recognise(tmp_path):
    record = _sage_record("You want someone to tell a joke", main_cha="暴躁型", lang="en")
    path = tmp_path / "sage.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    s = load_scenarios(path)[0]
    assert s.hidden_intention == "custom" and s.intention_text == "You want someone to tell a joke"
    assert s.language == "en"
    notes = " ".join(s.extras["unrecognised"])
    assert "task" in notes and "main_cha" in notes


def test_english_sage_file_with_canonical_intention():
    from sage_gym.scenarios import INTENTION_TEXT

    s = from_sage(_sage_record(INTENTION_TEXT["no_blame"], main_cha="passive", lang="en"))
    assert s.hidden_intention == "no_blame" and s.character_type == "passive"


def test_custom_intention_needs_text():
    record = _good_record(hidden_intention="custom", intention_text="")
    with pytest.raises(ScenarioError, match="intention_text"):
        Scenario.from_dict(record)


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"id": "caf\xe9"}', r"bad\.jsonl:2: not UTF-8 text: invalid continuation byte"),
        (b"[" * 100_000, r"bad\.jsonl:2: invalid JSON: nested too deeply"),
        (json.dumps(_good_record(extras={"deep": "X"})).replace('"X"', "[" * 900 + "]" * 900).encode(), r"bad\.jsonl:2: (the record is nested too deeply|invalid JSON: nested too deeply)"),
        (json.dumps(_good_record(id="\ud800")).encode(), r"bad\.jsonl:2: field 'id': not valid Unicode"),
        (json.dumps(_good_record(extras={"note": ["ok", "\udfff"]})).encode(), r"bad\.jsonl:2: field 'extras.note\[1\]': not valid Unicode"),
        (json.dumps(_good_record(id=7)).encode(), r"bad\.jsonl:2: field 'id': expected str, got int"),
        (json.dumps({"id": 1, "player": "p", "scene": "\ud800", "first_talk": "hi"}).encode(), r"bad\.jsonl:2: scenario '1': field 'background.story': not valid Unicode"),
    ],
)
def test_every_bad_file_is_a_scenario_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(_good_record(id="fine")).encode() + b"\n" + line + b"\n")
    with pytest.raises(ScenarioError, match=message):
        load_scenarios(path)


def test_scenarios_made_in_code_must_be_valid_text(small_set):
    with pytest.raises(ScenarioError, match="first_message.*not valid Unicode"):
        make_scenario("x", first_message="hello \ud800")
    with pytest.raises(TypeError, match="scenario id is a str"):
        small_set.get(7)
