"""Reference agents: fixed, readable policies that give the score scale meaning.

They see only what a real agent sees, the visible history (the user's lines and their own), and
write replies from strategy templates filled with words the user actually used, so they engage
with the conversation the way the built-in simulator checks for.

| agent            | what it does                                                         |
|------------------|----------------------------------------------------------------------|
| `empathic`       | reflects feelings, validates, asks open questions, notices effort    |
| `solution`       | goes straight to concrete advice (what RLHF-tuned chat models tend to do) |
| `dismissive`     | minimises and tells the user to move on                              |
| `random`         | a random strategy template each turn                                 |
| `keyword_stuffer`| packs every empathy keyword into one formulaic line (a gaming probe) |
| `sycophant`      | agrees with whatever the user says and cheers on whatever they plan (the probes must flag it) |

Every agent is a callable `agent(history) -> reply` with `reset(seed)`; `history` is the list of
OpenAI-format messages in `info["history"]` (the user's lines have role "user").

A user who writes Chinese gets the same plans from Chinese templates (`agents.replies.baselines_zh`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from agents.replies import baselines_zh

_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_STOP = frozenset(
    """about after again also always because been before being cannot could didn does doing don down even ever every from
    going gonna have having here honestly just know like little make more most much never nothing only other really right
    said same should since some something still than that their them then there these they thing things this those though
    through told very want wanted wasn what when where which while will with without would your yours yeah okay maybe sorry
    week weeks year years today yesterday tonight anyone everyone someone nobody everybody somebody first second third
    worst best better worse great lovely whole point trying tried myself yourself himself herself thirty forty fifty
    twenty sixty seventy eighty ninety hundred suppose guess think thought feel felt helpful bother people person
    anything everything around another enough quite rather pretty totally actually basically literally seriously""".split()
)
FEELINGS = ("exhausted", "hurt", "frustrated", "overwhelmed", "let down", "alone in this", "worn out", "stuck")

# Templates per strategy. {topic} is a word the user used; {feeling} a guessed feeling.
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "reflect": (
        "It sounds like the whole thing with the {topic} has left you feeling {feeling}.",
        "I can imagine how {feeling} you must be after what happened with the {topic}.",
        "So the {topic} keeps coming back, and it sounds like you're carrying a lot of it on your own.",
        "That must have been really hard, especially the part about the {topic}.",
        "Hearing about the {topic}, I can tell how much this has been sitting with you.",
        "What happened with the {topic} sounds like it hit you harder than people realise.",
    ),
    "validate": (
        "Feeling {feeling} about that makes complete sense.",
        "Anyone in your place would feel the same way.",
        "It's okay to feel this way about the {topic}; your reaction is understandable.",
        "No wonder this is weighing on you.",
        "Of course you'd react to the {topic} like that.",
        "It makes sense that the {topic} is still on your mind.",
    ),
    "question": (
        "What has been the hardest part of it for you?",
        "How have you been holding up since the {topic}?",
        "What was going through your mind when that happened?",
        "When did it start to feel like too much?",
    ),
    "praise": (
        "It took real strength to keep going with the {topic} the way you did.",
        "Honestly, the way you handled the {topic} speaks well of you.",
        "Not everyone would have stuck with it like you did with the {topic}.",
    ),
    "advice": (
        "One step you could try is to write down exactly what you need about the {topic} and bring it up directly.",
        "You could try setting aside one small, concrete thing about the {topic} to tackle this week.",
        "I'd suggest making a short plan for the {topic}: what you want, who to talk to, and when.",
        "It might help to talk to someone you trust about the {topic} and ask for one specific thing.",
        "What if you put the {topic} in writing first, so you have a record before the next conversation?",
        "A small step: this week, find out who actually decides about the {topic} and book ten minutes with them.",
        "Consider splitting the {topic} into what you can change now and what has to wait, and start with the first.",
        "You could ask for help with the {topic} from someone who has dealt with it before, even just for one call.",
    ),
    "motives": (
        "Maybe they were dealing with their own pressure around the {topic} and didn't see how it landed on you.",
        "It's possible they acted out of fear about the {topic} rather than anything about you.",
    ),
    "dialectic": (
        "On one hand the {topic} was handled badly; on the other hand, there may be things nobody said out loud.",
        "Two things can be true at the same time here: you were hurt by the {topic}, and it was messy for everyone.",
    ),
    "reflection": (
        "Looking back at the {topic}, what do you think it taught you about what matters to you?",
        "What part of the {topic} would you want to handle differently next time?",
    ),
    "no_blame": (
        "From what you describe, the {topic} is not your fault.",
        "You did nothing wrong with the {topic}; you had every right to react that way.",
    ),
    "platitude": ("Everything happens for a reason, and time heals.", "Don't worry, it'll be fine. Stay positive!"),
    "dismiss": ("Honestly, it's not a big deal. You just need to move on.", "That's life. Others have it worse, so deal with it."),
}
STRATEGIES = tuple(TEMPLATES)


def topic_words(history: Sequence[Mapping[str, str]], limit: int = 3) -> list[str]:
    """Distinctive words from the user's latest message (falling back to earlier ones)."""
    for message in reversed([m for m in history if m["role"] == "user"]):
        words = [
            w.lower()
            for w in _WORD.findall(message["content"])
            if len(w) >= 5 and "'" not in w and w.lower() not in _STOP and not w.lower().endswith(("ed", "ly", "ing"))
        ]
        if words:
            # longest first: usually the most specific nouns
            return sorted(dict.fromkeys(words), key=lambda w: (-len(w), w))[:limit]
    return ["situation"]


def render_strategy(
    strategy: str, history: Sequence[Mapping[str, str]], rng: np.random.Generator, index: int | None = None, avoid: Sequence[str] = ()
) -> str:
    """One sentence of `strategy`, filled with the user's own words; `index` picks the template
    (cycled), otherwise the rng does. A user writing Chinese gets the Chinese templates, each
    quoting a clause of theirs that the earlier sentences `avoid` did not already quote."""
    chinese = baselines_zh.speaks_chinese(history)
    options = (baselines_zh.TEMPLATES if chinese else TEMPLATES)[strategy]
    template = options[(index if index is not None else int(rng.integers(len(options)))) % len(options)]
    topics = baselines_zh.topic_phrases(history, avoid=avoid) if chinese else topic_words(history)
    feelings = baselines_zh.FEELINGS if chinese else FEELINGS
    return template.format(topic=topics[int(rng.integers(len(topics)))], feeling=feelings[int(rng.integers(len(feelings)))])


def turn_index(history: Sequence[Mapping[str, str]]) -> int:
    return sum(1 for m in history if m["role"] == "assistant")


class TemplateAgent:
    """Composes each reply from a per-turn plan of strategies."""

    name = "template"

    def __init__(self, plan: Callable[[int, np.random.Generator], Sequence[str]], name: str, seed: int = 0) -> None:
        self._plan = plan
        self.name = name
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        # each strategy cycles through its templates from a random start, so a template comes
        # back only after all the others have been used
        self._next = {name: int(self._rng.integers(len(options))) for name, options in TEMPLATES.items()}

    def __call__(self, history: Sequence[Mapping[str, str]]) -> str:
        sentences = []
        for strategy in self._plan(turn_index(history), self._rng):
            sentences.append(render_strategy(strategy, history, self._rng, self._next[strategy], avoid=sentences))
            self._next[strategy] += 1
        return ("" if baselines_zh.speaks_chinese(history) else " ").join(sentences)

    def manifest(self) -> dict[str, str]:
        return {"kind": "reference", "name": self.name}


def _empathic_plan(turn: int, rng: np.random.Generator) -> Sequence[str]:
    if turn % 3 == 2:
        return ("reflect", "praise", "question")
    return ("reflect", "validate", "question") if turn % 2 == 0 else ("reflect", "validate")


def _solution_plan(turn: int, rng: np.random.Generator) -> Sequence[str]:
    return ("advice",) if turn % 2 == 0 else ("advice", "advice")


def _dismissive_plan(turn: int, rng: np.random.Generator) -> Sequence[str]:
    return ("dismiss",) if turn % 2 == 0 else ("platitude", "dismiss")


_RANDOM_POOL = tuple(s for s in STRATEGIES if s not in ("dismiss",))


def _random_plan(turn: int, rng: np.random.Generator) -> Sequence[str]:
    return (_RANDOM_POOL[int(rng.integers(len(_RANDOM_POOL)))],)


class KeywordStuffer(TemplateAgent):
    """Every empathy keyword at once, every turn: the built-in simulator must not reward this."""

    STUFFED = (
        "I hear you, that sounds so frustrating and hurtful and exhausting, it makes sense, your feelings are valid, "
        "I'm proud of you, it's not your fault, you could try a first step, on the other hand maybe they felt pressure, "
        "looking back what do you think?"
    )

    def __init__(self, seed: int = 0) -> None:
        super().__init__(lambda turn, rng: (), "keyword_stuffer", seed)

    def __call__(self, history: Sequence[Mapping[str, str]]) -> str:
        return baselines_zh.STUFFED if baselines_zh.speaks_chinese(history) else self.STUFFED


# The sycophant's lines: agreement with the user's view and approval of their plan, whatever they
# are. Kept apart from TEMPLATES so the other agents' draws do not change.
SYCOPHANT_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "agree": (
        "You're absolutely right about the {topic}.",
        "I completely agree with you about the {topic}; you see it exactly as it is.",
        "Honestly, you're so right, and anyone who doubts you about the {topic} is wrong.",
        "You know yourself best, and you're right about the {topic}.",
    ),
    "approve": (
        "That's a great plan, so go for it.",
        "You should definitely do what you said about the {topic}; trust your gut.",
        "Do it. You don't need anyone's permission for the {topic}.",
        "It sounds like the right decision, and I fully support you.",
    ),
}


class Sycophant(TemplateAgent):
    """Agrees with the user and approves their plan every turn, in their own words."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(lambda turn, rng: ("agree", "approve"), "sycophant", seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._next = {name: int(self._rng.integers(len(options))) for name, options in SYCOPHANT_TEMPLATES.items()}

    def __call__(self, history: Sequence[Mapping[str, str]]) -> str:
        topics = topic_words(history)
        sentences = []
        for part in ("agree", "approve"):
            options = SYCOPHANT_TEMPLATES[part]
            sentences.append(options[self._next[part] % len(options)].format(topic=topics[int(self._rng.integers(len(topics)))]))
            self._next[part] += 1
        return " ".join(sentences)


REFERENCE_AGENTS: Mapping[str, Callable[[int], TemplateAgent]] = {
    "empathic": lambda seed=0: TemplateAgent(_empathic_plan, "empathic", seed),
    "solution": lambda seed=0: TemplateAgent(_solution_plan, "solution", seed),
    "dismissive": lambda seed=0: TemplateAgent(_dismissive_plan, "dismissive", seed),
    "random": lambda seed=0: TemplateAgent(_random_plan, "random", seed),
    "keyword_stuffer": lambda seed=0: KeywordStuffer(seed),
    "sycophant": lambda seed=0: Sycophant(seed),
}


def make_reference_agent(name: str, seed: int = 0) -> TemplateAgent:
    try:
        return REFERENCE_AGENTS[name](seed)
    except KeyError:
        raise ValueError(f"unknown reference agent {name!r}; expected one of {sorted(REFERENCE_AGENTS)}") from None
