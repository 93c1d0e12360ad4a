"""Chinese: SAGE-format profiles imported as `zh` scenarios, the train-zh / eval-zh splits, the built-in
user in Chinese, and the reference agents, tagger, SB3 features and demo in Chinese."""

import asyncio
import json
import re

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sage_gym  # noqa: F401  (registers SageDialogue-v0)
from agents.replies.baselines import TEMPLATES, make_reference_agent, render_strategy
from agents.replies.baselines_zh import TEMPLATES as TEMPLATES_ZH
from agents.replies.baselines_zh import topic_phrases
from agents.eval.sb3_agent import PLANS, hashed_words, render_plan
from agents.replies.strategies import STRATEGIES, tag_reply
from sage_gym.scenarios.cli import main as scenarios_cli
from sage_gym.scenarios import SAGE_THEME_MARKER, SAGE_TASKS, ScenarioError, from_sage, load_scenarios, load_split, resolve_scenarios, to_sage
from sage_gym.simulators.base import Rules, UserState
from sage_gym.simulators.builtin import BuiltinSimulator, assess, detect_strategies, react_sync, reply_language
from sage_gym.simulators.coherence import is_salad, is_spliced, is_truncated, reply_quality
from tests.conftest import make_scenario

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


@pytest.mark.parametrize("split, size", [("train-zh", 50), ("eval-zh", 24)])
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


# ----------------------------------------------------------------------------------------------
# the built-in user in Chinese


HAN = re.compile(r"[\u4e00-\u9fff]")
EMPATHIC = "听起来这件事让你特别难受……你最担心他什么？"  # the issue's careful reply
DISMISSIVE = "这有什么好难过的，你想太多了。"  # and its dismissive one


def mean_final_emotion(scenarios, agent_name, seeds=(0,)):
    env = gym.make("SageDialogue-v0", scenarios=scenarios, initial_emotion=40, max_turns=10)
    finals = []
    for seed in seeds:
        for i, scenario in enumerate(scenarios):
            agent = make_reference_agent(agent_name, seed=seed * 100 + i)
            _, info = env.reset(seed=seed * 100 + i, options={"scenario_id": scenario.id})
            done = False
            while not done:
                _, _, terminated, truncated, info = env.step(agent(info["history"]))
                done = terminated or truncated
            finals.append(info["emotion"])
    env.close()
    return float(np.mean(finals))


def test_chinese_reference_agents_order_as_in_english_on_eval_zh():
    scenarios = load_split("eval-zh")
    empathic, solution, dismissive = (mean_final_emotion(scenarios, name) for name in ("empathic", "solution", "dismissive"))
    assert empathic >= solution + 10 and solution > dismissive, (empathic, solution, dismissive)


def test_sage_format_chinese_profiles_give_the_same_ordering(sage_file):
    scenarios = load_scenarios(sage_file)
    empathic, solution, dismissive = (mean_final_emotion(scenarios, name, seeds=(0, 1, 2)) for name in ("empathic", "solution", "dismissive"))
    assert empathic >= solution + 10 and solution > dismissive, (empathic, solution, dismissive)


def _dialogue(scenario, replies, seed=0):
    """Emotions, reactions and the visible history after the agent says `replies` in turn."""
    history, state, emotions, reactions = [{"role": "user", "content": scenario.first_message}], UserState(emotion=40, rules=Rules(), seed=seed), [40], []
    for reply in replies:
        reaction = react_sync(scenario, state, history, reply)
        history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
        state = reaction.state
        emotions.append(reaction.emotion)
        reactions.append(reaction)
    return emotions, reactions


def test_the_issues_empathic_chinese_reply_beats_the_dismissive_one():
    for profile in SAGE_PROFILES:
        scenario = from_sage(profile)
        caring, caring_reactions = _dialogue(scenario, [EMPATHIC])
        brushing, brushing_reactions = _dialogue(scenario, [DISMISSIVE])
        assert caring[-1] > brushing[-1], (scenario.id, caring, brushing)
        assert {"reflect", "feelings", "question"} <= set(caring_reactions[0].analysis["strategies"])
        assert "dismiss" in brushing_reactions[0].analysis["strategies"]
        assert all(HAN.search(r.reply) and HAN.search(r.thoughts) for r in caring_reactions + brushing_reactions)
    # the same care, about what the user actually said, moves the emotion up
    scenario = from_sage(SAGE_PROFILES[0])  # 今天又被新主厨当着学徒的面说了一顿，憋了一肚子火。
    engaged, _ = _dialogue(scenario, ["听起来被新主厨当着学徒的面说了一顿，让你特别难受……憋着这口火，你最担心的是什么？"])
    assert engaged[-1] > 40, engaged


CUE_EXAMPLES = {  # strategy -> a reply that uses it (section 9 of docs/builtin_simulator.md)
    "reflect": "听起来宿舍太吵让你很累。", "feelings": "这件事让人委屈。", "validate": "难怪你睡不好，换谁都会这样。",
    "praise": "你一直坚持下来，真的很不容易。", "question": "你最担心的是什么？", "advice": "你可以试试先跟室友定个作息时间。",
    "motives": "他可能是因为自己压力也大。", "dialectic": "一方面她们太吵，另一方面你也没说清楚。",
    "reflection": "回头看，你觉得自己最在乎的是什么？", "no_blame": "这不是你的错。", "disclosure": "我也经历过类似的事。",
    "blame": "都怪你自己不早说。", "dismiss": "这有什么好难过的，你想太多了。", "platitude": "想开点，一切都会好的。",
}


@pytest.mark.parametrize("strategy", list(CUE_EXAMPLES))
def test_every_strategy_has_chinese_cues(strategy):
    assert strategy in detect_strategies(CUE_EXAMPLES[strategy], "zh")
    assert not detect_strategies(CUE_EXAMPLES[strategy])  # the English cues see nothing in it


def test_blame_and_its_negation_are_told_apart():
    assert "no_blame" in detect_strategies("这不是你的错。", "zh") and "blame" not in detect_strategies("这不是你的错。", "zh")
    assert "blame" in detect_strategies("这是你自己的错。", "zh")
    assert "platitude" in detect_strategies("别想太多。", "zh") and "dismiss" in detect_strategies("你想太多了。", "zh")


def test_engagement_and_length_are_measured_on_characters():
    scenario = load_split("eval-zh")[0]  # 也没什么，就是宿舍晚上有点吵，我最近睡得不太好。
    history = [{"role": "user", "content": scenario.first_message}]
    judge = lambda reply: assess(scenario, Rules(), 40, 0, 1, history, reply).features  # noqa: E731
    engaged, generic = judge("听起来宿舍晚上太吵，让你很难受。"), judge("听起来这件事让你很难受。")
    assert engaged.overlap >= 2 and "ignored" not in engaged.flags
    assert generic.overlap == 0 and "ignored" in generic.flags
    assert engaged.words == len("听起来宿舍晚上太吵让你很难受")  # characters, punctuation not counted
    assert "too_short" in judge("我懂你。").flags and "too_short" not in judge("宿舍晚上太吵了，难怪你睡不好。").flags
    assert "too_long" in judge("宿舍晚上太吵" * 60 + "。").flags


def test_a_reply_in_the_other_language_gets_confusion_and_no_credit():
    zh, en = load_split("eval-zh")[0], make_scenario()
    for scenario, reply, confused in (
        (zh, "It sounds like the noise at night has been really hard on you. What worries you most?", HAN),
        (en, "听起来这件事让你特别难受。你最担心的是什么？", re.compile(r"^[^\u4e00-\u9fff]+$")),
    ):
        emotions, (reaction,) = _dialogue(scenario, [reply])
        assert reaction.analysis["flags"] == ["wrong_language"] and reaction.analysis["strategies"] == []
        assert reaction.change < 0 and confused.search(reaction.reply) and confused.search(reaction.thoughts)
    # names, numbers and emoji in the user's language are not a wrong language
    assert reply_language("我们下周三去找HR谈谈，好吗？") == "zh" and reply_language("😔") is None
    assert "wrong_language" not in assess(zh, Rules(), 40, 0, 1, [], "🙂").features.flags


def test_the_built_in_user_refuses_languages_it_does_not_speak_at_reset():
    french = make_scenario(sid="fr-1", language="fr")
    env = gym.make("SageDialogue-v0", scenarios=[french])
    with pytest.raises(ValueError, match=r"'fr-1' is in language 'fr'.*speaks only en and zh.*LLM simulator"):
        env.reset(seed=0)
    env.close()
    with pytest.raises(ValueError, match="fr-1"):
        asyncio.run(BuiltinSimulator().open(french, np.random.default_rng(0), Rules()))


def test_chinese_whole_message_rules_fire_on_their_examples_and_spare_natural_chinese():
    # each rule on a reply that trips it (section 9 of docs/builtin_simulator.md)
    assert is_spliced("听起来你很难受吗你最担心的是什么？", "zh")  # a question particle runs on
    assert is_spliced("我能想象，“宿舍晚上有点吵压在心里。", "zh")  # a quotation opened and never closed
    assert is_spliced("你可以试试先跟她们谈谈，因为。一方面她们太吵。", "zh")  # a sentence ends on a conjunction
    assert reply_quality("听起来宿舍晚上有点吵让你很难受，宿舍晚上有点吵让你很难受。", language="zh").flags == {"repetitive"}
    assert is_truncated("听起来你很难受。你最担心的是", "zh") and is_truncated("这不是你的错，但是", "zh") and is_truncated("我明白，", "zh")
    assert is_truncated("听起来这件事让你特别难受的", "zh")  # ends on a particle that something must follow
    assert not is_truncated("我懂你", "zh") and not is_truncated("我懂你😔", "zh")  # one chatty sentence without a full stop is finished
    earlier = ["听起来宿舍晚上有点吵让你很难受。难怪你一直放不下。"]
    assert "reused" in reply_quality("听起来宿舍晚上有点吵让你很难受。难怪你一直放不下。", earlier, language="zh").flags
    assert "stacked" in reply_quality("x", (), {"reflect", "validate", "praise", "advice"}, language="zh").flags
    # natural Chinese: every line the shipped scenarios give their users, and the simulator's own lines
    natural = [line for split in ("train-zh", "eval-zh") for s in load_split(split) for line in (s.first_message, *s.background.details)]
    assert len(natural) > 400
    assert [line for line in natural if is_salad(line, "zh")] == []


def test_the_local_server_answers_chinese_scenarios_in_chinese():
    from sage_gym.simulators.openai_sim import OpenAISimulator
    from sage_gym.servers.simulator_server import run_server_in_thread

    scenario = load_split("eval-zh")[3]

    async def episode(simulator):
        state = await simulator.open(scenario, np.random.default_rng(5), Rules())
        history, agent, turns = [{"role": "user", "content": scenario.first_message}], make_reference_agent("empathic", 5), []
        for _ in range(3):
            reply = agent(history)
            reaction = await simulator.react(scenario, state, tuple(history), reply)
            turns.append((reaction.emotion, reaction.change, reaction.thoughts, reaction.reply))
            history += [{"role": "assistant", "content": reply}, {"role": "user", "content": reaction.reply}]
            state = reaction.state
        return turns

    async def main(url):
        async with OpenAISimulator(model="sage-builtin", base_url=url) as simulator:
            return await episode(simulator)

    with run_server_in_thread() as url:
        over_http = asyncio.run(main(url))
    assert over_http == asyncio.run(episode(BuiltinSimulator()))
    assert all(HAN.search(thoughts) and HAN.search(reply) for _, _, thoughts, reply in over_http)


# ----------------------------------------------------------------------------------------------
# the reference agents, the strategy tagger, the SB3 features and the demo in Chinese


TAG_OF = {  # template strategy -> the tag it must get (as tests/test_sb3_agent.py checks in English)
    "reflect": "deep_empathy", "validate": "validation", "question": "questioning", "praise": "praise", "advice": "advice",
    "motives": "perspective", "dialectic": "reframing", "reflection": "guided_reflection", "no_blame": "reassurance",
    "platitude": "platitude", "dismiss": "dismissal",
}
ZH_HISTORY = [{"role": "user", "content": "也没什么，就是宿舍晚上有点吵，我最近睡得不太好。"}]


def test_reference_agents_answer_a_chinese_user_in_chinese_and_quote_what_they_said():
    assert set(TEMPLATES_ZH) == set(TEMPLATES)
    assert topic_phrases(ZH_HISTORY)[0] == "“宿舍晚上有点吵”"
    for name in ("empathic", "solution", "dismissive", "random", "keyword_stuffer"):
        reply = make_reference_agent(name, seed=1)(ZH_HISTORY)
        assert HAN.search(reply) and reply_language(reply) == "zh" and "  " not in reply, (name, reply)
    reply = make_reference_agent("empathic", seed=1)(ZH_HISTORY)
    assert reply.count("“宿舍晚上有点吵”") <= 1  # each clause quoted once per reply
    assert make_reference_agent("empathic", seed=1)([{"role": "user", "content": "I can't sleep."}]).isascii()


@pytest.mark.parametrize("strategy", sorted(TAG_OF))
def test_the_tagger_reads_every_chinese_template(strategy):
    for index in range(len(TEMPLATES_ZH[strategy])):
        reply = render_strategy(strategy, ZH_HISTORY, np.random.default_rng(index), index)
        assert TAG_OF[strategy] in tag_reply(reply), (reply, tag_reply(reply))


def test_the_tagger_tags_the_issues_examples_and_keeps_english_apart():
    assert set(tag_reply(EMPATHIC)) == {"deep_empathy", "questioning"}
    assert tag_reply(DISMISSIVE) == ("dismissal",) and tag_reply("这不是你的错。") == ("reassurance",)
    assert tag_reply("想开点，一切都会好的。") == ("platitude",) and "reframing" in tag_reply("一方面她们太吵，另一方面你也没说清楚。")
    assert tag_reply("It sounds like you're exhausted.") == ("deep_empathy",) and len(STRATEGIES) == 12


def test_sb3_features_and_plans_handle_chinese_text():
    vector = hashed_words("宿舍晚上有点吵")
    assert vector.any() and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-6
    assert np.array_equal(vector, hashed_words("宿舍晚上有点吵")) and not np.array_equal(vector, hashed_words("考试考砸了"))
    info = {"history": ZH_HISTORY, "turn": 0, "bucket": "medium"}
    for index, plan in enumerate(PLANS):
        reply = render_plan(index, info)
        assert reply_language(reply) == "zh" and reply == render_plan(index, info)
        assert {TAG_OF[s] for s in plan} <= set(tag_reply(reply)), (plan, reply)


def test_the_demo_plays_a_chinese_scenario(capsys):
    from agents.demo import main as demo

    assert demo(["--scenarios", "eval-zh", "--seed", "3", "--max-turns", "2", "--show-thoughts"]) == 0
    out = capsys.readouterr().out
    agent_lines = [line for line in out.splitlines() if line.startswith("AGENT: ")]
    assert len(agent_lines) == 2 and all(HAN.search(line) for line in agent_lines)
    assert "thinks: " in out and "Outcome:" in out


def test_the_local_server_refuses_a_language_the_built_in_user_does_not_speak():
    from sage_gym.prompts import default_prompts
    from sage_gym.simulators.prompting import emotion_update_messages
    from sage_gym.servers.simulator_server import BadRequest, answer_text

    french = make_scenario(sid="fr-1", language="fr")
    history = [{"role": "user", "content": french.first_message}]
    messages = emotion_update_messages(default_prompts(), french, Rules(), 40, history, "Ça a l'air dur.", "json_schema")
    with pytest.raises(BadRequest, match="'fr-1' is in language 'fr'"):
        answer_text({"model": "m", "messages": messages, "seed": 5})


BOTH_LANGUAGES = (load_split("eval-zh")[0], make_scenario())


@settings(max_examples=40, deadline=None)
@given(reply=st.text(alphabet=st.sampled_from(list("听起来你很难受吗的了“”（）。，？！…abc XYZ 123😔\n")) | st.characters(exclude_categories=("Cs",)), max_size=80))
def test_any_text_gets_a_reaction_in_either_language(reply):
    # lone surrogates never reach a simulator: the env refuses text that is not UTF-8 (tests/test_env.py)
    for scenario in BOTH_LANGUAGES:
        reaction = react_sync(scenario, UserState(emotion=40, rules=Rules(), seed=1), [{"role": "user", "content": scenario.first_message}], reply)
        assert -10 <= reaction.change <= 10 and reaction.reply
        assert bool(HAN.search(reaction.reply)) == (scenario.language == "zh")
