"""Chinese cues for the strategy tagger (`agents.replies.strategies`), one tuple per strategy of its taxonomy.

`tag_reply` matches these next to the English rules, so a Chinese reply is tagged with the same
taxonomy and the evaluation report shows the same strategy mix for `eval-zh` as for `eval`. Like the
English rules, they are written for analysis and kept apart from the built-in simulator's scoring
cues (`sage_gym.simulators.builtin.lexicon_zh`): a tagger that reused the reward's own patterns would only
echo what the reward already saw. Every pattern contains Chinese characters, so English replies are
tagged exactly as before.

| strategy | example cues |
|---|---|
| `deep_empathy` | 听起来, 听上去, 我能想象, 你一定很…, 这一定很…, 我能感觉到, 看得出, 压在你心里 |
| `validation` | 难怪, 换谁都会, 很正常, 可以理解, 情有可原, 不奇怪, 有这样的反应 |
| `praise` | 不容易, 了不起, 勇敢, 佩服, 做得很好, 很有担当, 不是每个人都能 |
| `reassurance` | 不是你的错, 不怪你, 你没有做错, 错不在你, 你有权 |
| `self_disclosure` | 我也经历过, 我以前也, 我当年, 我也有过 |
| `questioning` | a full-width or ASCII question mark (？ ?) |
| `guided_reflection` | 回头看, 你觉得自己, 学到了什么, 如果重来, 对你来说最重要, 下次 |
| `reframing` | 一方面, 另一方面, 换个角度, 两件事可以同时, 反过来想, 不是非黑即白 |
| `perspective` | 他可能是因为, 也许他们, 站在他的角度, 对方可能, 有自己的压力 |
| `advice` | 你可以试试, 建议, 不妨, 第一步, 定个计划, 要不先, 也许可以 |
| `platitude` | 想开点, 别想太多, 一切都会好, 时间会冲淡一切, 都会过去的, 开心一点 |
| `dismissal` | 有什么好难过, 你想太多了, 多大点事, 别矫情, 往前看, 都怪你, 是你自己的错 |
"""

from __future__ import annotations

from collections.abc import Mapping

RULES_ZH: Mapping[str, tuple[str, ...]] = {
    "deep_empathy": (
        r"听起来", r"听上去", r"我(能|可以)?(想象|体会|感觉到|感受到)", r"你一定(很|特别|非常|挺|也)", r"(这|那)一定(很|让你|特别)",
        r"看得出(来)?", r"压在你心(里|上)", r"让你(特别|很|这么|那么)(难受|委屈|累|痛|失望|孤单|无助|憋屈|心累|疲惫)", r"你(一个人)?扛了",
    ),
    "validation": (
        r"难怪", r"怪不得", r"换(了|作|成)?(是)?谁都会", r"很正常", r"再正常不过", r"(完全)?可以理解", r"情有可原", r"(一点都|并)不奇怪",
        r"有(这样|这种)的?(反应|感受|情绪)", r"合情合理",
    ),
    "praise": (
        r"不容易", r"了不起", r"勇敢", r"佩服", r"为你(骄傲|自豪)", r"做得(很|非常|特别|真|挺)?(好|棒|到位|漂亮)", r"很有担当",
        r"不是每个人都(能|会)", r"值得(肯定|骄傲)",
    ),
    "reassurance": (r"不是你的(错|问题|责任)", r"不怪你", r"你(没|没有)(做错|错)", r"错不在你", r"你有权", r"你不用(自责|内疚)"),
    "self_disclosure": (r"我也(经历|遇到|碰到|有过)", r"我(以前|曾经)也", r"我当年", r"我自己也(经历|遇到)"),
    "questioning": (r"？",),
    "guided_reflection": (
        r"回头(看|想)", r"回过头", r"你觉得自己", r"(学到|明白|看到)了?什么", r"如果重来", r"对你来说(最)?重要", r"下次", r"你(最)?在乎",
    ),
    "reframing": (
        r"一方面", r"另一方面", r"换个角度", r"(从|换)另一个角度", r"两件事(可以|都)", r"反过来(看|想|说)", r"不是非黑即白", r"话说回来",
    ),
    "perspective": (
        r"(他|她|他们|她们|对方)(可能|也许|或许|大概)(是|有|也|没|觉得|担心|害怕|因为)", r"(也许|或许|说不定)(他|她|他们|她们|对方)",
        r"站在(他|她|他们|对方)的?(角度|立场)", r"可能是因为", r"有(他|她|他们|自己)的(难处|压力|苦衷)",
    ),
    "advice": (
        r"你可以(试试|试着|先|找|跟|把|考虑)", r"建议", r"不妨", r"第一步", r"(定|做)(一)?个(简单的)?计划", r"要不(你)?先", r"也许可以",
        r"或许可以", r"试着",
    ),
    "platitude": (r"想开(点|些)", r"别想太多", r"一切都会好", r"会好起来的", r"时间会冲淡", r"都会过去的", r"开心(一)?点", r"往好处想"),
    "dismissal": (
        r"有什么好(难过|伤心|哭|生气)", r"你想太多", r"想多了", r"多大点(儿)?事", r"别矫情", r"往前看", r"至于吗", r"都怪你",
        r"(?<!不)是你(自己)?的错", r"小题大做",
    ),
}
