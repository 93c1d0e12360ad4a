"""The reference agents' Chinese: strategy templates and topic extraction for a user who writes Chinese.

`agents.replies.baselines` switches to these tables when the user's latest message is Chinese (more Han
characters than Latin words), so every reference agent plays `eval-zh` and imported SAGE/RLVER
profiles with the same plans as in English.

Chinese has no spaces, so the agents cannot pick "a word the user used" the English way. They
quote a short clause of the user's latest message instead ("你说的“宿舍晚上有点吵”"), which is
also how people show they listened in Chinese: the clause with the most topic characters, without
question words and without the fillers users start with (也没什么, 就是, 其实, ...).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_CLAUSE_BREAK = re.compile(r"[，。！？!?；;：:、,…“”‘’「」『』《》（）()\s~～—]+")
_FILLER = re.compile(r"^(?:嗯+|唉|哎|啊|呃|那个|也没什么|没什么|没事|就是|其实|反正|可能|总之|然后|所以|但是|不过|我觉得|说实话|说真的|算了)+")
# questions, lines about the listener and bare reactions ("这么说也对", "算了") make poor topics
_SKIP = re.compile(r"什么|怎么|为什么|哪|谁|吗|呢|吧|你|当回事|没多大事|就那样|这么说|说得|算你|接近|白说|不算|也对|大概|也许|好像|不知道|无所谓|算了|不说|不想|有道理|没错")
# the same function characters the built-in user leaves out of a topic (a topic must carry content)
_FUNCTION = frozenset(
    "的了着过地得是在有和与跟同及或而且但就都也还又再很太最更非常我你他她它们这那个些么什怎谁哪吗呢吧啊呀哦嗯嘛呗啦一不没别"
    "要会能可以说到去来对把被让给从向为于之其此所因如果虽然后已经自己些点下上里中多少好大小真挺"
)
_GENERIC = frozenset("知道 觉得 感觉 时候 事情 现在 其实 真的 有点 东西 意思 情况 问题 一直 已经 最近".split())
TOPIC_CHARS = (4, 14)  # a quoted clause this long reads naturally
FALLBACK_TOPIC = "这件事"

FEELINGS = ("委屈", "疲惫", "难受", "失望", "孤单", "憋屈", "心累", "无助")

# Templates per strategy. {topic} is a quoted clause of the user's (or 这件事); {feeling} a guessed feeling.
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "reflect": (
        "听起来{topic}让你特别{feeling}。",
        "我能想象，{topic}压在心里，你一定很{feeling}。",
        "所以你一直在想{topic}，感觉你一个人扛了很多。",
        "这一定很不好受，尤其是{topic}那一段。",
        "听你讲{topic}，我能感觉到这件事一直压在你心里。",
        "说到{topic}，听起来这件事对你的打击比别人以为的要大。",
    ),
    "validate": (
        "会觉得{feeling}，一点都不奇怪，换谁都会这样。",
        "换作是谁都会有同样的感受。",
        "你对{topic}有这样的反应，完全可以理解。",
        "难怪你一直放不下。",
        "遇到{topic}，你有这种情绪再正常不过了。",
        "{topic}到现在还在你心里，这很正常。",
    ),
    "question": (
        "这里面最让你难受的是什么？",
        "这段时间你是怎么撑过来的？",
        "那时候你心里在想什么？",
        "是从什么时候开始觉得撑不住的？",
    ),
    "praise": (
        "在{topic}上你一直撑着，这真的很不容易。",
        "说实话，你处理{topic}的方式很有担当。",
        "不是每个人都能像你这样，在{topic}上坚持下来。",
    ),
    "advice": (
        "你可以试试把关于{topic}你真正需要的写下来，再当面说清楚。",
        "这周你可以先挑一件和{topic}有关的小事，试着解决它。",
        "我建议你为{topic}定个简单的计划：想要什么、找谁谈、什么时候谈。",
        "也许可以找一个信得过的人聊聊{topic}，请对方帮一个具体的忙。",
        "要不先把{topic}写下来，留个记录，再谈的时候有依据。",
        "第一步，这周弄清楚{topic}到底由谁来决定，约对方谈十分钟。",
        "不妨把{topic}分成现在能改变的和只能等的两部分，先从能改变的做起。",
        "你可以找一个处理过类似事情的人，就{topic}请教一次，哪怕只是打个电话。",
    ),
    "motives": (
        "也许他们在{topic}上也有自己的压力，没意识到这对你的影响。",
        "对方这么做，可能是因为对{topic}心里没底，不一定是冲着你来的。",
    ),
    "dialectic": (
        "一方面，{topic}确实处理得不好；另一方面，也许还有些话谁都没说出口。",
        "换个角度看，两件事可以同时成立：{topic}让你受了委屈，而这件事对每个人来说都不好办。",
    ),
    "reflection": (
        "回头看{topic}，你觉得它让你明白了什么对你最重要？",
        "关于{topic}，如果重来一次，你想在哪一部分做得不一样？",
    ),
    "no_blame": (
        "照你说的，{topic}不是你的错。",
        "在{topic}上你没有做错什么，你有权那样反应。",
    ),
    "platitude": ("想开点，一切都会好起来的。时间会冲淡一切。", "别想太多了，开心一点，都会过去的。"),
    "dismiss": ("这有什么好难过的，你想太多了。", "多大点事，别矫情了，往前看吧。"),
}
STUFFED = (
    "我听到你了，听起来真的很委屈很难受很累，这很正常，你的感受是合理的，我为你骄傲，这不是你的错，"
    "你可以试试第一步，另一方面他可能也有压力，回头看你觉得呢？"
)


def is_chinese(text: str) -> bool:
    """More Han characters than Latin words: the user writes Chinese."""
    return len(_HAN.findall(text)) > len(_LATIN_WORD.findall(text))


def speaks_chinese(history: Sequence[Mapping[str, str]]) -> bool:
    """Whether the user's latest message (the one the agent answers) is Chinese."""
    latest = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    return is_chinese(latest)


def _topic_weight(clause: str) -> int:
    return sum(a not in _FUNCTION and b not in _FUNCTION and a + b not in _GENERIC for a, b in pairwise(clause))


def topic_phrases(history: Sequence[Mapping[str, str]], limit: int = 3, avoid: Collection[str] = ()) -> list[str]:
    """Quoted clauses from the user's latest message (falling back to earlier ones), most topical
    first; clauses in `avoid` (already quoted in this reply) are left out: a reply quotes each once."""
    for message in reversed([m for m in history if m["role"] == "user"]):
        clauses = []
        for clause in _CLAUSE_BREAK.split(message["content"]):
            clause = _FILLER.sub("", clause.strip())
            n = len(_HAN.findall(clause))
            if TOPIC_CHARS[0] <= n <= TOPIC_CHARS[1] and n == len(clause) and not _SKIP.search(clause) and _topic_weight(clause) and not any(f"“{clause}”" in a for a in avoid):
                clauses.append(clause)
        if clauses:
            ranked = sorted(dict.fromkeys(clauses), key=lambda c: (-_topic_weight(c), -len(c), c))
            return [f"“{c}”" for c in ranked[:limit]]
    return [FALLBACK_TOPIC]
