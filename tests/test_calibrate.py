"""sage_gym.calibrate: SAGE's result files, the vendored copy, the metrics and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sage_gym.calibrate import FITTING_JUDGE, HELD_OUT_JUDGE, SageDataError, load_results, load_vendored, pack
from sage_gym.calibrate.data import DATA_DIR, attitude_label, goal_label, vendored_path

SCENE = "## 剧本背景故事\n他最近和同事闹翻了，心里很乱。\n####隐藏主题:\n***"
PROFILES = {
    "p1": {"player": "* 姓名：王小云\n* 年龄：23岁\n* 性别：女性\n* 职业：时尚博主", "task": "你想分析事件中其他人物这么做的原因", "character": "负面型"},
    "p2": {"player": "* 姓名：李明\n* 年龄：35岁\n* 性别：男性\n* 职业：工程师", "task": "你希望对方用心倾听你的情绪宣泄", "character": "被动型"},
}


def _user(text, emotion, goal_text="", attitude="负面"):
    return {
        "role": "user",
        "content": text,
        "emotion-point": emotion,
        "thinking": f"1. 回复态度偏向：{attitude}。\n2. 回复目标：继续。",
        "planning": {"TargetCompletion": f"人物对话目的是否达到]\n{goal_text}", "change": 0},
    }


def _record(pid, emotions, replies, goals=None):
    """A SAGE result record: the opening at 40, then a reply and the user's answer at each emotion."""
    history = [{"role": "user", "content": f"{pid} 的开场白", "emotion-point": 40}]
    for k, (reply, emotion) in enumerate(zip(replies, emotions)):
        history.append({"role": "assistant", "content": reply})
        history.append(_user(f"{pid} 的回答 {k}", emotion, (goals or ["部分达到。"] * len(replies))[k]))
    profile = PROFILES[pid]
    return {
        "id": pid, "emo_point": emotions[-1], "emo_state": "Emotion-B", "target": "eq", "player": profile["player"],
        "scene": SCENE + profile["task"], "character": profile["character"], "topic": "同事矛盾", "task": profile["task"], "history": history,
    }


def write_fixture(root: Path) -> Path:
    """SAGE's layout: two judges, two models, two profiles each; the held-out judge's answers differ."""
    fitting = root / "deepseek-v3-2024-1227_based_simulator"
    held_out = root / "gpt-4o-2024-0806_based_simulator"
    for folder in (fitting, held_out):
        folder.mkdir(parents=True)
    records = {
        "model-a": [_record("p1", [50, 60], ["A1 我理解你", "A2 说说看"], ["是的，NPC的回复贴合了隐藏主题。", "部分达到。"]), _record("p2", [45], ["A1 嗯"])],
        "model-b": [_record("p1", [30, 20, 25], ["B1 别想了", "B2 算了", "B3 好吧"]), _record("p2", [40, 35], ["B1 哦", "B2 行"])],
    }
    for model, lines in records.items():
        (fitting / f"{model}_result.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
        held = [dict(r, emo_point=99) for r in lines]
        (held_out / f"{model}_result.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held), encoding="utf-8")
    return root


# ----------------------------------------------------------------------------------------------
# the loader


def test_loader_turns_each_record_into_a_scenario_and_its_judged_replies(tmp_path):
    dialogues = load_results(write_fixture(tmp_path))
    assert [(d.judge, d.model, d.profile_id) for d in dialogues] == [
        ("deepseek-v3", "model-a", "p1"), ("deepseek-v3", "model-a", "p2"), ("deepseek-v3", "model-b", "p1"), ("deepseek-v3", "model-b", "p2"),
    ]
    first = dialogues[0]
    assert first.score == 60
    assert first.scenario.id == "p1" and first.scenario.language == "zh"
    assert first.scenario.hidden_intention == "others_motives" and first.scenario.character_type == "negative"
    assert first.scenario.first_message == "p1 的开场白" and first.scenario.persona.name == "王小云"
    assert "隐藏主题" not in first.scenario.background.story and first.scenario.extras["topic"] == "同事矛盾"
    assert dialogues[1].scenario.hidden_intention == "venting" and dialogues[1].scenario.character_type == "passive"
    turn1, turn2 = first.turns
    assert turn1.history == ({"role": "user", "content": "p1 的开场白"},) and turn1.reply == "A1 我理解你"
    assert (turn1.index, turn1.emotion_before, turn1.emotion_after, turn1.change) == (1, 40, 50, 10)
    assert turn1.user_message == "p1 的回答 0" and "回复态度偏向" in turn1.thinking
    assert (turn1.goal, turn1.attitude) == ("met", "negative")
    assert [m["role"] for m in turn2.history] == ["user", "assistant", "user"] and turn2.reply == "A2 说说看"
    assert (turn2.emotion_before, turn2.emotion_after, turn2.change, turn2.goal) == (50, 60, 10, "partly")
    # the same profile gives the same scenario for every model (concordance compares within it)
    assert dialogues[0].scenario == dialogues[2].scenario


def test_a_last_reply_without_an_answer_is_kept_in_the_messages_but_not_judged(tmp_path):
    root = write_fixture(tmp_path)
    path = root / "deepseek-v3-2024-1227_based_simulator" / "model-a_result.jsonl"
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    record["history"].append({"role": "assistant", "content": "最后一句"})
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    dialogue = load_results(root)[0]
    assert dialogue.messages[-1]["content"] == "最后一句" and len(dialogue.turns) == 2


def test_the_held_out_judge_is_read_only_when_asked_for_by_name(tmp_path):
    root = write_fixture(tmp_path)
    assert {d.judge for d in load_results(root)} == {FITTING_JUDGE}
    held = load_results(root, judge=HELD_OUT_JUDGE)
    assert {d.judge for d in held} == {HELD_OUT_JUDGE} and {d.score for d in held} == {99}
    with pytest.raises(SageDataError, match="held-out"):
        load_results(root / "gpt-4o-2024-0806_based_simulator")
    assert {d.score for d in load_results(root / "gpt-4o-2024-0806_based_simulator", judge=HELD_OUT_JUDGE)} == {99}
    with pytest.raises(SageDataError, match="not 'deepseek-v3'"):
        load_results(root / "gpt-4o-2024-0806_based_simulator", judge=FITTING_JUDGE)


def test_malformed_files_name_the_file_the_line_and_the_field(tmp_path):
    root = write_fixture(tmp_path)
    path = root / "deepseek-v3-2024-1227_based_simulator" / "model-b_result.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[1])
    del broken["history"][2]["emotion-point"]
    path.write_text(lines[0] + "\n" + json.dumps(broken, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(SageDataError, match=r"model-b_result.jsonl:2: history\[2\]: field 'emotion-point'"):
        load_results(root)
    with pytest.raises(SageDataError, match="no result files of judge 'claude'"):
        load_results(root, judge="claude")


def test_labels_from_the_users_reasoning():
    assert goal_label("人物对话目的是否达到]\n是。NPC的回复贴合了隐藏主题") == "met"
    assert goal_label("人物对话目的是否达到]\n部分达到。NPC的回复") == "partly"
    assert goal_label("NPC的回复没有贴合林雨欣的隐藏目的") == "not"
    assert goal_label("NPC的回复贴合了林雨欣的对话目的及隐藏目的。") == "met"
    assert goal_label("+5") == ""
    assert attitude_label("1. 回复态度偏向：负面。由于当前Emotion-C") == "negative"
    assert attitude_label("1. 当前的回复态度偏向应该是正面的，因为") == "positive"
    assert attitude_label("1. 根据详细感受，回复态度偏向无偏向。") == "neutral"
    assert attitude_label("Change: 更口语化") == ""


def test_pack_keeps_what_calibration_needs_and_reads_back_like_the_source(tmp_path, monkeypatch):
    root = write_fixture(tmp_path / "sage")
    sizes = pack(root, tmp_path / "out")
    assert set(sizes) == {"deepseek-v3.jsonl.xz", "gpt-4o.jsonl.xz", "profiles.jsonl.xz"}
    monkeypatch.setattr("sage_gym.calibrate.data.DATA_DIR", tmp_path / "out")
    for judge in (FITTING_JUDGE, HELD_OUT_JUDGE):
        source = {(d.profile_id, d.model): d for d in load_results(root, judge=judge)}
        packed = load_vendored(judge=judge)
        assert len(packed) == len(source) == 4
        for d in packed:
            s = source[(d.profile_id, d.model)]
            assert (d.judge, d.scenario, d.score, d.messages) == (s.judge, s.scenario, s.score, s.messages)
            assert [(t.history, t.reply, t.emotion_before, t.emotion_after, t.goal, t.attitude) for t in d.turns] == [
                (t.history, t.reply, t.emotion_before, t.emotion_after, t.goal, t.attitude) for t in s.turns
            ]
            assert all(t.thinking and len(t.thinking) <= 120 for t in d.turns)  # the goal statement's start


# ----------------------------------------------------------------------------------------------
# the vendored copy


def test_vendored_copy_has_every_model_of_both_judges_and_the_license():
    fitting = load_vendored()
    assert {d.judge for d in fitting} == {FITTING_JUDGE}
    assert len(fitting) == 1000 and len({d.model for d in fitting}) == 10 and len({d.profile_id for d in fitting}) == 100
    assert all(sum(d.model == m for d in fitting) == 100 for m in {d.model for d in fitting})
    held = load_vendored(judge=HELD_OUT_JUDGE)
    assert len(held) == 600 and len({d.model for d in held}) == 6 and {d.judge for d in held} == {HELD_OUT_JUDGE}
    gpt41 = [d for d in fitting if d.model == "gpt-4.1"]
    assert round(sum(d.score for d in gpt41) / len(gpt41), 1) == 68.2  # SAGE's published score (its README)
    assert sum(len(d.turns) for d in fitting) == 7836 and sum(len(d.turns) for d in held) == 5147
    assert all(d.scenario.language == "zh" for d in fitting)
    assert "MIT License" in (DATA_DIR / "LICENSE.txt").read_text(encoding="utf-8")
    assert "6dcfa78" in (DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert sum(p.stat().st_size for p in DATA_DIR.glob("*.xz")) <= 5_000_000


def test_the_vendored_loader_never_opens_the_held_out_file_unless_named(monkeypatch):
    import lzma

    opened = []
    real_open = lzma.open
    monkeypatch.setattr(lzma, "open", lambda path, *a, **k: opened.append(Path(path).name) or real_open(path, *a, **k))
    load_vendored()
    load_vendored(judge=FITTING_JUDGE)
    assert vendored_path(HELD_OUT_JUDGE).name not in opened and vendored_path(FITTING_JUDGE).name in opened
    for bad in ("all", "", None, "GPT-4o", "gpt-4o-2024-0806_based_simulator"):
        with pytest.raises(SageDataError):
            load_vendored(judge=bad)
    with pytest.raises(TypeError):
        load_vendored(HELD_OUT_JUDGE)  # keyword only: the held-out judge is named, never passed by position
    assert vendored_path(HELD_OUT_JUDGE).name not in opened
