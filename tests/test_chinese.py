"""Chinese scenarios: SAGE-format profiles imported as `zh` scenarios, and the train-zh / eval-zh splits."""

import json

import gymnasium as gym
import pytest

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from sage_gym.scenario_cli import main as scenarios_cli
from sage_gym.scenarios import SAGE_THEME_MARKER, SAGE_TASKS, ScenarioError, from_sage, load_scenarios, load_split, resolve_scenarios, to_sage

TASK = {intention: task for task, intention in SAGE_TASKS.items()}


def _profile(sid, name, age, sex, job, style, scene, intention, main_cha, traits, first_talk):
    """One profile in SAGE's file format, its scene ending with the hidden theme."""
    player = f"姓名：{name}\n年龄：{age}\n性别：{sex}\n职业：{job}\n说话风格：{style}"
    return {"id": sid, "player": player, "scene": scene + SAGE_THEME_MARKER + TASK[intention], "main_cha": main_cha,
            "cha_group": traits, "task": TASK[intention], "first_talk": first_talk}


# Written for these tests (not taken from SAGE or RLVER): one per intention group and character type.
SAGE_PROFILES = [
    _profile("zh-sage-1", "石磊", 35, "男", "厨师", "话少，带点火气",
             "石磊在一家酒楼做了八年厨师。新来的主厨把他的招牌菜从菜单上撤了，还当着学徒的面说他的手艺过时了。",
             "venting", "负面型", ["易怒", "好面子", "嘴硬"], "今天又被新主厨当着学徒的面说了一顿，憋了一肚子火。"),
    _profile("zh-sage-2", "夏雨", 24, "女", "小学老师", "声音很轻，常说没事",
             "夏雨刚工作一年，班上一个孩子的家长每天晚上十一点还在微信上给她发长语音，要求她单独辅导孩子。",
             "concrete_advice", "被动型", ["顺从", "胆小", "内向"], "没事，就是有个家长每天很晚还给我发消息。"),
    _profile("zh-sage-3", "邵军", 58, "男", "退休电工", "打哈哈，不谈感受",
             "邵军的老伴去年走了，他一个人住，女儿让他搬去跟她住，他不肯，每天在楼下下棋到天黑。",
             "deep_empathy", "回避型", ["回避", "嘴硬", "孤独"], "也没啥，老伴走了一年了，我一个人挺自在的。"),
    _profile("zh-sage-4", "柯欣", 30, "女", "会计", "说话直接，带刺",
             "柯欣的闺蜜借了她的婚纱照摄影师的联系方式，结果抢先订走了她看中的档期，还说是巧合。",
             "others_motives", "负面型", ["多疑", "尖锐", "重感情"], "我最好的朋友抢了我的婚纱照档期，还说是巧合，呵呵。"),
    _profile("zh-sage-5", "江涛", 17, "男", "高中生", "嗯嗯啊啊，很少多说",
             "江涛在篮球赛最后一秒投丢了关键球，球队输了，队友在更衣室里没人跟他说话。",
             "specific_praise", "被动型", ["自卑", "沉默", "努力"], "嗯，今天比赛输了，最后那个球是我投的。"),
    _profile("zh-sage-6", "罗娜", 42, "女", "店长", "语气冷淡，转移话题",
             "罗娜按公司规定开除了一个屡次迟到的店员，那个店员在网上发帖说她冷血，总部让她写情况说明。",
             "no_blame", "回避型", ["冷淡", "回避", "要强"], "也没什么，就是开除了一个员工，网上有人骂我。"),
]
EXPECTED = {
    "zh-sage-1": ("venting", "negative"), "zh-sage-2": ("concrete_advice", "passive"), "zh-sage-3": ("deep_empathy", "avoidant"),
    "zh-sage-4": ("others_motives", "negative"), "zh-sage-5": ("specific_praise", "passive"), "zh-sage-6": ("no_blame", "avoidant"),
}


@pytest.fixture()
def sage_file(tmp_path):
    path = tmp_path / "sage_zh.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in SAGE_PROFILES), encoding="utf-8")
    return path


def test_sage_format_chinese_profiles_import_as_zh_scenarios(sage_file):
    scenarios = load_scenarios(sage_file)
    assert scenarios.ids == tuple(EXPECTED)
    for profile, s in zip(SAGE_PROFILES, scenarios):
        assert s.language == "zh"
        assert (s.hidden_intention, s.character_type) == EXPECTED[s.id]
        assert "unrecognised" not in s.extras and s.extras["source"] == "sage"
        assert s.persona.name == profile["player"].split("\n")[0].split("：")[1]
        assert s.persona.sex in ("男", "女") and s.persona.occupation != "unspecified" and 17 <= s.persona.age <= 58
        assert s.background.story == profile["scene"].split(SAGE_THEME_MARKER)[0]  # the hidden theme stays out
        assert TASK[s.hidden_intention] not in s.background.story and s.background.details == ()
        assert s.first_message == profile["first_talk"] and s.character_traits == tuple(profile["cha_group"])
        assert from_sage(to_sage(s)) == s  # and back to SAGE's format, Chinese task strings included
        assert to_sage(s)["task"] == profile["task"] and to_sage(s)["main_cha"] == profile["main_cha"]


def test_import_sage_command_line_gives_a_file_the_environment_plays(sage_file, tmp_path, capsys):
    out = tmp_path / "imported.jsonl"
    assert scenarios_cli(["import-sage", str(sage_file), str(out)]) == 0
    assert f"wrote {len(SAGE_PROFILES)} scenarios" in capsys.readouterr().out
    imported = load_scenarios(out)
    assert [s.to_dict() for s in imported] == [s.to_dict() for s in load_scenarios(sage_file)]
    assert scenarios_cli(["validate", str(out), "--schema-only"]) == 0
    env = gym.make("SageDialogue-v0", scenarios=str(out))
    obs, info = env.reset(seed=0, options={"scenario_id": "zh-sage-3"})
    assert obs == "也没啥，老伴走了一年了，我一个人挺自在的。"
    env.close()


@pytest.mark.parametrize("split, size", [("train-zh", 48), ("eval-zh", 24)])
def test_chinese_split_names_work_wherever_split_names_do(split, size):
    scenarios = load_split(split)
    assert len(scenarios) == size and {s.language for s in scenarios} == {"zh"}
    assert resolve_scenarios(split).sha256 == scenarios.sha256
    env = gym.make("SageDialogue-v0", scenarios=split)
    obs, _ = env.reset(seed=1)
    assert obs in {s.first_message for s in scenarios}
    env.close()


def test_an_unknown_split_name_lists_the_chinese_ones():
    with pytest.raises(ScenarioError, match="eval-zh"):
        resolve_scenarios("eval-fr")
    with pytest.raises(ValueError, match="train-zh"):
        load_split("zh")


def test_evaluation_command_line_takes_a_chinese_split(tmp_path):
    from agents.evaluate import main

    report = main(["--agent", "empathic", "--scenarios", "eval-zh", "--limit", "2", "--max-turns", "1",
                   "--output", str(tmp_path / "zh"), "--no-progress", "--no-plots"])
    assert report["results"]["n"] == 2
    assert report["manifest"]["evaluation"]["scenarios"] == "eval-zh"
    assert report["manifest"]["environment"]["scenarios"]["sha256"] == load_split("eval-zh").sha256
