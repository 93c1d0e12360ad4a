"""sage_gym.calibrate: SAGE's result files, the vendored copy, the metrics and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sage_gym.calibrate import FITTING_JUDGE, HELD_OUT_JUDGE, SageDataError, kendall_tau_b, load_results, load_vendored, measure, pack, spearman
from sage_gym.calibrate.__main__ import main
from sage_gym.calibrate.data import DATA_DIR, attitude_label, goal_label, vendored_path
from sage_gym.simulators import Reaction, SimulatorError, UserState

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


# ----------------------------------------------------------------------------------------------
# the figures, through the Simulator protocol with a user whose changes are known

KNOWN_CHANGES = {"A1 我理解你": 3, "A2 说说看": 1, "A1 嗯": 2, "B1 别想了": 3, "B2 算了": -4, "B3 好吧": 0, "B1 哦": -1, "B2 行": -2, "C1 唔": -3, "C1 呃": -3}


class KnownUser:
    """A simulated user whose change for each reply is looked up in a table; it records what it is given."""

    kind = "known"

    def __init__(self, fail_on: str = ""):
        self.calls, self.opened, self.fail_on = [], 0, fail_on

    async def open(self, scenario, rng, rules):
        self.opened += 1
        return UserState(emotion=rules.initial_emotion, rules=rules, memory={"seen": 0})

    async def react(self, scenario, state, history, agent_reply):
        if agent_reply == self.fail_on:
            raise SimulatorError("the endpoint is down")
        self.calls.append((scenario.id, state.emotion, state.memory["seen"], tuple(history), agent_reply))
        change = KNOWN_CHANGES[agent_reply]
        after = UserState(emotion=state.emotion + change, rules=state.rules, turn=state.turn + 1, memory={"seen": state.memory["seen"] + 1})
        return Reaction(emotion=after.emotion, change=change, bucket="medium", thoughts="", reply="嗯", leaves=False, state=after)

    def manifest(self):
        return {"kind": self.kind}


def three_models(tmp_path):
    """The fixture plus model-c: p1 40 -> 45 (score 45), p2 40 -> 40 (score 40, a recorded tie with model-b's first reply)."""
    root = write_fixture(tmp_path)
    record_1, record_2 = _record("p1", [45], ["C1 唔"]), _record("p2", [40], ["C1 呃"])
    path = root / "deepseek-v3-2024-1227_based_simulator" / "model-c_result.jsonl"
    path.write_text(json.dumps(record_1, ensure_ascii=False) + "\n" + json.dumps(record_2, ensure_ascii=False) + "\n", encoding="utf-8")
    return load_results(root)


def test_figures_match_a_hand_computation(tmp_path):
    user = KnownUser()
    result = measure(three_models(tmp_path), user, bootstrap=50)
    assert (result.simulator, result.profiles, result.dialogues, result.replies, result.errors) == ("known", 2, 6, 10, 0)
    rows = {row.model: row for row in result.models}
    assert [row.model for row in result.models] == ["model-a", "model-c", "model-b"]  # by SAGE score: 52.5, 42.5, 30
    assert (rows["model-a"].sage_score, rows["model-c"].sage_score, rows["model-b"].sage_score) == (52.5, 42.5, 30.0)
    assert rows["model-a"].our_change == pytest.approx(2.0) and rows["model-b"].our_change == pytest.approx(-0.8)
    assert rows["model-b"].recorded_change == pytest.approx(-4.0)
    assert rows["model-b"].our_by_turn == pytest.approx((1.0, -3.0, 0.0)) and rows["model-b"].recorded_by_turn == pytest.approx((-5.0, -7.5, 5.0))
    # ours ranks a (2.0) > b (-0.8) > c (-3.0); SAGE a > c > b: 2 concordant pairs, 1 discordant
    assert result.kendall_tau.value == pytest.approx(1 / 3)
    # first replies, p1: a-b recorded +20, ours tie (0.5); a-c +5 vs +6 (1); b-c -15 vs +6 (0)
    #                 p2: a-b +5 vs +3 (1); a-c +5 vs +5 (1); b-c recorded tie: skipped
    assert result.first_reply_concordance.value == pytest.approx(3.5 / 5)
    our_ranks = [9.5, 7, 8, 9.5, 1, 6, 5, 4, 2.5, 2.5]  # ours 3,1,2 | 3,-4,0,-1,-2 | -3,-3, ties averaged
    recorded_ranks = [9.5, 9.5, 7, 1.5, 1.5, 7, 4.5, 3, 7, 4.5]  # recorded 10,10,5 | -10,-10,5,0,-5 | 5,0
    assert result.spearman.value == pytest.approx(float(np.corrcoef(our_ranks, recorded_ranks)[0, 1]))
    for figure in (result.kendall_tau, result.first_reply_concordance, result.spearman):
        assert figure.low <= figure.high
    assert repr(result) == repr(measure(three_models(tmp_path / "again"), KnownUser(), bootstrap=50))  # seeded (repr: nan != nan)


def test_each_reply_meets_the_recorded_history_at_a_fixed_or_the_recorded_emotion(tmp_path):
    dialogues = three_models(tmp_path)
    user = KnownUser()
    measure(dialogues, user, bootstrap=10)
    assert user.opened == 6 and len(user.calls) == 10
    by_reply = {(sid, reply): (emotion, seen, history) for sid, emotion, seen, history, reply in user.calls}
    assert {emotion for emotion, _, _ in by_reply.values()} == {40}
    emotion, seen, history = by_reply[("p1", "B3 好吧")]
    assert seen == 2  # the simulator's own state follows the dialogue from reply to reply
    assert [m["content"] for m in history] == ["p1 的开场白", "B1 别想了", "p1 的回答 0", "B2 算了", "p1 的回答 1"]
    user = KnownUser()
    measure(dialogues, user, emotion="recorded", bootstrap=10)
    assert {(sid, reply): emotion for sid, emotion, _, _, reply in user.calls}[("p1", "B3 好吧")] == 20
    with pytest.raises(ValueError, match="emotion"):
        measure(dialogues, KnownUser(), emotion=140)


def test_a_failed_reply_ends_its_dialogues_measurement_and_is_counted(tmp_path):
    result = measure(three_models(tmp_path), KnownUser(fail_on="B2 算了"), bootstrap=10)
    assert result.errors == 2 and result.replies == 8  # B2 and B3 of model-b's p1 dialogue
    assert {row.model: row.our_by_turn for row in result.models}["model-b"] == pytest.approx((1.0, -2.0, float("nan")), nan_ok=True)


def test_rank_statistics_on_hand_computed_cases():
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4])[0] == pytest.approx(4 / 6)  # one discordant pair of six
    assert kendall_tau_b([1, 1, 2], [1, 2, 3])[0] == pytest.approx(2 / np.sqrt(2 * 3))  # tau-b: a tie in x
    assert kendall_tau_b([3, 2, 1], [1, 2, 3])[0] == pytest.approx(-1.0)
    assert kendall_tau_b([[1, 2, np.nan]], [[1, 2, 3]])[0] == pytest.approx(1.0)  # a model absent from a resample
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    stats = pytest.importorskip("scipy.stats")  # a cross-check where scipy happens to be installed
    rng = np.random.default_rng(0)
    x, y = rng.integers(-3, 4, 40), rng.integers(-3, 4, 40)
    assert kendall_tau_b(x, y)[0] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


# ----------------------------------------------------------------------------------------------
# the command


def test_command_prints_the_table_for_the_vendored_data(capsys, tmp_path):
    assert main(["--limit", "2", "--bootstrap", "20", "--quiet", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "judge deepseek-v3, simulator builtin, emotion before each reply: 40; 2 profiles, 20 dialogues" in out
    assert out.count("| (recorded) |") == 10 and "| gpt-4.1 |" in out
    for figure in ("Kendall tau", "First-reply concordance", "Per-reply Spearman"):
        assert figure in out
    saved = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert saved["judge"] == "deepseek-v3" and len(saved["models"]) == 10 and saved["profiles"] == 2


def test_command_reads_a_sage_folder_and_the_held_out_judge_only_by_name(capsys, tmp_path):
    root = write_fixture(tmp_path / "sage")
    assert main([str(root), "--bootstrap", "10", "--quiet", "--emotion", "recorded"]) == 0
    assert "judge deepseek-v3, simulator builtin, emotion before each reply: recorded; 2 profiles, 4 dialogues" in capsys.readouterr().out
    assert main([str(root), "--judge", "gpt-4o", "--bootstrap", "10", "--quiet"]) == 0
    assert "judge gpt-4o" in capsys.readouterr().out
    assert main([str(root / "gpt-4o-2024-0806_based_simulator"), "--quiet"]) == 1
    assert "held-out" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--quiet"]) == 1
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--emotion", "calm"])


def test_pack_command_writes_the_compact_copy(capsys, tmp_path):
    root = write_fixture(tmp_path / "sage")
    assert main(["pack", str(root), str(tmp_path / "out")]) == 0
    assert "total" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deepseek-v3.jsonl.xz", "gpt-4o.jsonl.xz", "profiles.jsonl.xz"]


def test_an_llm_simulator_is_measured_the_same_way(tmp_path):
    """The OpenAI-compatible simulator by name, against the local server that plays the built-in user, over loopback HTTP."""
    from sage_gym.servers.simulator_server import run_server_in_thread

    dialogues = load_results(write_fixture(tmp_path))
    with run_server_in_thread() as url:
        over_http = measure(dialogues, "openai", {"base_url": url, "model": "m", "api_key": "k"}, bootstrap=20, concurrency=2)
    in_process = measure(dialogues, "builtin", bootstrap=20)
    assert over_http.simulator == "openai" and over_http.errors == 0
    assert repr([(r.model, r.our_by_turn) for r in over_http.models]) == repr([(r.model, r.our_by_turn) for r in in_process.models])  # nan where a model has no reply
    assert repr(over_http.spearman) == repr(in_process.spearman)


def test_concurrency_bounds_the_dialogues_in_flight(tmp_path):
    import asyncio

    class SlowUser(KnownUser):
        in_flight = peak = 0

        async def react(self, scenario, state, history, agent_reply):
            SlowUser.in_flight += 1
            SlowUser.peak = max(SlowUser.peak, SlowUser.in_flight)
            await asyncio.sleep(0.01)
            SlowUser.in_flight -= 1
            return await super().react(scenario, state, history, agent_reply)

    measure(three_models(tmp_path), SlowUser(), bootstrap=10, concurrency=2)
    assert SlowUser.peak == 2
