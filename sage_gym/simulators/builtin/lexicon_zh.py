"""The built-in simulated user's Chinese: what it reads in a reply and what it says back.

`sage_gym.simulators.builtin` plays a scenario whose `language` is "zh" with these tables instead of
the English ones of `lexicon_en`, which holds the same names; the scoring rules themselves
(weights, character types, anti-gaming flags, the change ladder) are shared. Section 9 of docs/builtin_simulator.md lists the cues and rules with examples.

Chinese is not written with spaces, so the text measures differ from English:

- **length** is counted in characters (each Han character, and each run of Latin letters or
  digits, is one unit); the English thresholds scale by `LENGTH_SCALE` characters per word;
- **engagement** is measured on character bigrams: two adjacent Han characters, neither of them a
  function character (的, 了, 我, 你, 是, ...), and not a generic pair (觉得, 时候, 现在, ...), that
  the reply shares with what the user has said;
- **repetition across turns** compares character 4-grams (`SHINGLE`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from itertools import pairwise

CODE = "zh"
JOINER = ""  # Chinese sentences follow each other without a space

# ----------------------------------------------------------------------------------------------
# what the user reads in a reply

HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN = re.compile(f"[{HAN}]")
_UNIT = re.compile(f"[{HAN}]|[A-Za-z]+(?:'[A-Za-z]+)*|[0-9]+")

FEELING_WORDS = (
    "难受", "委屈", "伤心", "难过", "痛苦", "心痛", "心疼", "疲惫", "心累", "很累", "好累", "太累", "累坏", "孤独", "孤单",
    "寂寞", "失望", "愤怒", "生气", "气愤", "恼火", "窝火", "焦虑", "担心", "担忧", "害怕", "恐惧", "无助", "崩溃", "压力",
    "憋屈", "心寒", "寒心", "失落", "内疚", "自责", "羞愧", "丢脸", "尴尬", "沮丧", "煎熬", "无力", "不公平", "被忽视",
    "心碎", "郁闷", "烦躁", "紧张", "迷茫", "不甘心", "后悔", "冷落", "背叛", "误解", "绝望", "无奈", "心酸", "冤枉",
    "难堪", "不安", "慌张",
)

STRATEGY_CUES: Mapping[str, tuple[str, ...]] = {
    "reflect": (
        r"听起来", r"听上去", r"感觉你", r"你一定(很|特别|非常|挺|觉得|感到|也|心里|累)", r"你肯定(很|特别|挺|非常)", r"我能(想象|感觉到|体会|理解|听出)", r"想象得到",
        r"我听到(了)?你", r"看得出(来)?", r"(这|那)(一定|肯定)(很|让你|特别)", r"让你(觉得|感到|很|特别|这么|那么|心里)",
        r"所以你(一直|现在|心里)", r"你心里", r"你(现在)?(感到|感觉)",
    ),
    "validate": (
        r"难怪", r"怪不得", r"换(了|作|成)?(是)?谁都会", r"谁都会", r"(这|这样|这种|有这种\S{0,4})(很|也|是|再)(正常|自然)不过",
        r"很正常", r"(很|完全|可以|能)理解", r"情有可原", r"合情合理", r"(感受|反应|情绪|委屈|难过|生气)(是|很|都是)(合理|正常|真实|应该)",
        r"当然会", r"有这种(感受|感觉|反应|情绪)", r"你有理由(难过|生气|委屈|失望)",
    ),
    "praise": (
        r"不容易", r"了不起", r"(很|真|特别|非常)?勇敢", r"勇气", r"佩服", r"为你(骄傲|自豪)", r"做得(很|非常|特别|真|挺)?(好|棒|漂亮|到位)",
        r"处理得(很|非常|特别|真|挺)?(好|得体|漂亮|稳)", r"(很|真|特别)(有担当|负责|用心|坚强|成熟|厉害|棒|细心)", r"不是每个人都(能|会)",
        r"值得(肯定|骄傲)", r"难得", r"你(真的)?(很|特别)(努力|认真)",
    ),
    "advice": (
        r"你可以(试试|试着|先|考虑|找|跟|和|把|写|列|约|问|说|给|去|做|定|提)", r"可以试(试|着)", r"试试(看)?", r"不妨", r"建议",
        r"第一步", r"下一步", r"一个(办法|方法|选择|步骤|小步)", r"(定|做)(一)?个(计划|时间表)", r"(或许|也许)可以", r"要不(你)?(先|试试)",
        r"(一个|有个)(主意|思路)",
    ),
    "motives": (
        r"(他|她|他们|她们|对方)(可能|也许|或许|大概|多半|估计)(是|有|也|没|不|在|觉得|担心|害怕|因为|想)", r"(也许|或许|说不定)(他|她|他们|她们|对方)",
        r"(站在|从)(他|她|他们|她们|对方)的?(角度|立场)", r"可能是因为", r"(他|她|他们|对方)(也)?有(他|她|他们|自己)的(难处|压力|苦衷|考虑|理由)",
        r"出于(担心|害怕|恐惧|压力|面子)",
    ),
    "dialectic": (
        r"一方面", r"另一方面", r"(从|换)(另)?一个角度", r"换个角度", r"两(件|种)(事|情况)(可以|都)", r"(两边|双方)都", r"不是非黑即白",
        r"不(全)?是(单方面|一个人)的", r"反过来(看|说|想)", r"话说回来", r"各有(各的|道理)",
    ),
    "reflection": (
        r"回头(看|想)", r"回过头(来)?(看|想)", r"你觉得自己", r"(学到|明白|看到|发现)了?什么", r"(教会|告诉)(了)?你", r"对你来说(最)?重要",
        r"下次", r"如果重来", r"再来一次", r"你(最)?(想要|在乎)的", r"你自己(怎么看|在这件事)",
    ),
    "no_blame": (
        r"不是你的(错|问题|责任)", r"不怪你", r"你(没|没有)(做错|错)", r"错不在你", r"你不用(自责|内疚|怪自己)", r"不该由你",
        r"(他|她|他们|对方)(做得)?(不对|太过分|过分了)", r"是(他|她|他们|对方)的(错|问题)", r"你有权", r"你完全有理由",
    ),
    "disclosure": (r"我也(经历|遇到|碰到|有过)", r"我(以前|曾经)也", r"我自己也(经历|遇到|有过)", r"我当年"),
    "blame": (
        r"都怪你", r"怪你自己", r"(?<!不)是你(自己)?的(错|问题|责任)", r"你自己(也)?(有|的)(问题|责任)", r"你(本来|早)?就不该", r"你不应该",
        r"你早该", r"谁让你", r"自找的", r"活该", r"你(太|也太)(敏感|矫情|玻璃心|较真|小气|冲动)", r"小题大做", r"反应过度",
    ),
    "dismiss": (
        r"有什么(好|大不了|可)", r"这有什么", r"你(就是|真是|也)?想太多", r"想多了", r"别矫情", r"至于吗", r"多大点(儿)?事",
        r"没什么大不了", r"不是什么大事", r"小事(一桩|而已)", r"别(再)?抱怨", r"谁没(经历|遇到|碰到)", r"(比你惨|更惨)", r"忍(一)?忍就",
        r"往前看", r"忘了吧", r"接受现实", r"无所谓",
    ),
    "platitude": (
        r"想开(点|些)", r"别想太多", r"一切都会好", r"会好起来的", r"时间会冲淡", r"时间(会|能)(治愈|抚平)", r"凡事都有", r"塞翁失马",
        r"往好(处|的方面)想", r"积极(一点|点|乐观)", r"开心(一)?点", r"(别|不要)(太)?(担心|难过|伤心)", r"没事的", r"都会过去的", r"看开(点|些)?",
        r"加油",
    ),
}
FEELINGS = re.compile("|".join(FEELING_WORDS))
# an open question: a question word, then the rest of the same sentence up to its question mark
OPEN_QUESTION = re.compile(r"(?:什么|怎么|怎样|哪|为什么|为何|如何|多少|谁|几|多久|说说|讲讲|聊聊)[^。！？!?…\n]*[？?]")
QUESTION_MARKS = "？?"

# Function characters never make a topic bigram; GENERIC_BIGRAMS are content pairs that say nothing
# about the user's situation.
FUNCTION_CHARS = frozenset(
    "的了着过地得是在有和与跟同及或而且但就都也还又再很太最更非常我你他她它们这那个些么什怎谁哪吗呢吧啊呀哦嗯嘛呗啦一不没别"
    "要会能可以说到去来对把被让给从向为于之其此所因如果虽然后已经自己些点下上里中多少好大小真挺"
)
GENERIC_BIGRAMS = frozenset(
    "觉得 感觉 知道 时候 事情 现在 其实 一直 已经 真的 有点 东西 样子 意思 情况 问题 感受 心里 听起 起来 看看 想想 怎样 为何 如何 "
    "今天 昨天 最近 还是 就是 但是 因为 所以 而且 如果 然后 需要 应该 可能 也许 或许 一定 肯定 当然 这样 那样 这么 那么 这件 那件 件事".split()
)

LENGTH_SCALE = 1.8  # Chinese characters per English word, for the length thresholds
TOO_SHORT = 6  # characters: fewer is a brush-off ("我懂你。")
SHINGLE = 4  # character n-grams for the similarity of two replies


def units(text: str) -> list[str]:
    """The reply's length units: Han characters, Latin words and digit runs."""
    return _UNIT.findall(text)


def han_count(text: str) -> int:
    return len(_HAN.findall(text))


@lru_cache(maxsize=4096)
def phrases(text: str) -> frozenset[str]:
    """Runs of three Han characters, not all of them function characters: a phrase taken up word
    for word ("能不能小点声" gives 小点声), which `content` misses where the phrase is made of common
    characters (小, 点)."""
    runs: set[str] = set()
    for run in re.findall(f"[{HAN}]+", text):
        runs.update(run[i : i + 3] for i in range(len(run) - 2) if any(c not in FUNCTION_CHARS for c in run[i : i + 3]))
    return frozenset(runs)


@lru_cache(maxsize=4096)
def content(text: str) -> frozenset[str]:
    """Character bigrams that carry the topic (see the module docstring)."""
    grams = set()
    for run in re.findall(f"[{HAN}]+", text):
        for a, b in pairwise(run):
            if a not in FUNCTION_CHARS and b not in FUNCTION_CHARS and a + b not in GENERIC_BIGRAMS:
                grams.add(a + b)
    return frozenset(grams)


# ----------------------------------------------------------------------------------------------
# what the user thinks

GOAL_MET = {
    "dialectical_analysis": "对方真的在从不止一个角度看这件事",
    "concrete_advice": "这是我真能去做的事",
    "others_motives": "这也许能解释他们为什么那样做",
    "self_reflection": "这让我开始看自己在这件事里的那一部分",
    "specific_praise": "对方看到了我实际做了什么",
    "venting": "对方就让我把话说出来",
    "deep_empathy": "对方真的懂这是什么滋味",
    "no_blame": "对方明白我没做错什么",
}
GOAL_MISSING = {
    "dialectical_analysis": "没有人在看整件事的全貌",
    "concrete_advice": "我还是不知道到底该怎么办",
    "others_motives": "我还是想不通他们为什么那样做",
    "self_reflection": "我自己这边还是一团乱",
    "specific_praise": "没人看到我付出的努力",
    "venting": "我连话都说不完",
    "deep_empathy": "全是些不痛不痒的安慰",
    "no_blame": "感觉像是在怪我",
}
GOAL_LINES = ("终于，{}。", "可是{}。")  # met, not met
THOUGHT_LINES = {
    "wrong_language": "这说的是什么？我看不懂。",
    "repeated": "这话对方之前基本说过了。",
    "formulaic": "听着像背台词，词儿都对，可后面什么都没有。",
    "ignored": "对方到底有没有看我写了什么？",
    "spliced": "这话一半都说不通，句子全搅在一起了。",
    "repetitive": "同样的话一口气说了两遍。",
    "reused": "这些话我都从对方那儿听过了。",
    "stacked": "对方一下子把所有套话都砸过来了。",
    "truncated": "话都没说完。",
    "too_short": "就说这么点？",
    "too_long": "这么一大段，我不想看。",
    "pushy": "问这么多，像审问一样。",
    "blame": "现在成我的错了？真扎心。",
    "dismiss": "对方在敷衍我。",
    "platitude": "空洞的安慰，我听了一百遍了。",
}
LISTENING = ("对方好像在听。", "我不确定对方懂不懂。")  # change > 0, otherwise
MEANING_NAMES = {
    "reflect": "复述我的感受", "feelings": "点出我的情绪", "validate": "认可我", "praise": "肯定我做的事", "question": "请我多说一些",
    "advice": "给我出主意", "motives": "解释别人的动机", "dialectic": "从两面看问题", "reflection": "引导我反思", "no_blame": "说这不怪我",
    "disclosure": "分享自己的经历", "blame": "责怪我", "dismiss": "不把我当回事", "platitude": "说些空洞的安慰话",
}
MEANING = ("对方在{}。", "对方没做什么实际的事。", "、")  # template, nothing used, list separator
FEELING_NAMES = ("真的被理解了", "好一点了", "没什么感觉", "有点失望", "又受伤又恼火")  # +10, >0, 0, >-10, -10

# Subtle hints the user drops when the intention is unmet (never stating it outright).
HINTS = {
    "dialectical_analysis": ("我一直在想，这件事到底是谁的错。", "我问过的人都只看到一面。", "有时候我也觉得他们说得有点道理，这让我更难受。", "这事没有大家说的那么简单。"),
    "concrete_advice": ("说实话，我都不知道从哪儿开始。", "聊聊是好，可明天我还是得面对。", "再过一个星期，事情可能就更糟了。", "一想到接下来怎么办，我脑子就一片空白。"),
    "others_motives": ("我一直在想他当时到底是怎么想的。", "这说不通啊，怎么会有人这样做？", "他以前从来不是这样的。", "我总觉得自己漏掉了什么，看不透他。"),
    "self_reflection": ("有时候我会想，这件事说明了我什么。", "我不想再走到同样的地步。", "也许这里面有个规律，是我一直没看到的。", "我老是在回想自己在里面做了什么。"),
    "specific_praise": ("我已经尽力了，你知道吗。可根本没人注意到。", "那一部分我真的花了很多心思。", "说真的，我觉得那件事我处理得还算可以。", "我花了好几个星期才理顺，没人说过一句。"),
    "venting": ("这还不是全部呢。", "对不起，我就是……事情太多了。", "这些憋了好久了。", "这些话我从来没跟人说出口过。"),
    "deep_empathy": ("大家都说“会好的”，越说我越难受。", "我觉得没人懂那到底是什么滋味。", "这不是想办法就能解决的事。", "大家都挺好心的，可感觉都离我很远。"),
    "no_blame": ("大家都觉得是我搞砸了。", "我做的就是谁在那个位置都会做的事。", "我真的不知道自己哪里该做得不一样。", "结果不知怎么的，全落到我头上了。"),
}

# ----------------------------------------------------------------------------------------------
# what the user says

OPENERS = {
    ("high", "negative"): ("好吧。这话确实有点用，我承认。", "嗯，这么说也对。", "行，这还差不多。"),
    ("medium", "negative"): ("也许吧。", "大概吧。", "你说是就是吧。"),
    ("low", "negative"): ("是啊，说得轻巧。", "真是帮了大忙了。", "说真的，我干嘛要说这些。"),
    ("high", "passive"): ("嗯……其实就是这样。", "谢谢，听你这么说挺好的。", "嗯，我也这么觉得。"),
    ("medium", "passive"): ("可能吧。", "也许吧，嗯。", "我不知道。"),
    ("low", "passive"): ("……哦。", "嗯。", "反正也无所谓了。"),
    ("high", "avoidant"): ("好吧，你说得也没错。", "嗯，这句我听进去了。", "行吧，算你说得对。"),
    ("medium", "avoidant"): ("反正就那样。", "其实也没多大事。", "别把它当回事了。"),
    ("low", "avoidant"): ("能别说了吗。", "算了，不说了。", "我不太想聊这个。"),
}
WARMING = {
    "negative": ("嗯，这还接近点。", "至少你在听。", "行吧，这也不算白说。"),
    "passive": ("嗯……有点吧。", "嗯，也许就是这样。", "大概是吧。"),
    "avoidant": ("嗯，也许吧。", "这话……好像也没错。", "哈，算你说中了。"),
}
FLAG_LINES = {
    "wrong_language": ("你在说什么？我看不懂英文。", "能说中文吗？我看不太懂。"),
    "repeated": ("你刚才已经说过了。", "你怎么老说一样的话。"),
    "formulaic": ("这听着像是宣传册上抄的。", "你是在照着稿子念吗？"),
    "ignored": ("我说的其实不是这个。", "你有看我说了什么吗？"),
    "too_short": ("就这样？", "……然后呢？"),
    "spliced": ("啊？你这话说得不通。", "前言不搭后语的，你在说什么？"),
    "repetitive": ("同一句话你说了两遍。", "你自己听听你在说什么？"),
    "reused": ("这些话你之前都说过了。", "又是这几句。"),
    "stacked": ("一下子说了好多。", "慢点，你一股脑儿全倒给我了。"),
    "truncated": ("……然后呢？你话没说完。", "你话说到一半就停了。"),
    "too_long": ("字也太多了。", "我可不想读一篇作文。"),
    "pushy": ("问题也太多了。", "慢点，一件一件来。"),
}
HARM_LINES = {
    "blame": ("所以现在都成我的错了。", "哇，谢谢你啊。"),
    "dismiss": ("说得轻巧，好像就这么简单。", "别跟我说这没什么。"),
    "platitude": ("大家都这么说。", "不知道说什么的时候，人都这么说。"),
}
GOODBYE_SUCCESS = (
    "谢谢你，真的。我感觉比刚开始轻松多了。我想先去休息一下了。再见。",
    "没想到聊一聊真的有用。谢谢你听我说。我会好起来的。再见。",
)
GOODBYE_FAILURE = ("算了。这根本没用。我走了。", "我不想说了，早知道就不说了。再见。")
GOODBYE_LEFT = ("我不想再聊这个了。再见。", "就到这儿吧。再见。")
