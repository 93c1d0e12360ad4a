"""Strategy analysis: which response strategies does each agent turn use?

RLVER reports that RL training moves a chat model from solution-centric replies (advice first) to
empathic ones (reflecting feelings, validating, asking). This module makes that shift visible in
an evaluation report: every agent turn is tagged with the strategies it uses, and the report shows
the mix.

Two taggers share one taxonomy:

- `tag_reply(reply)`: a documented rule-based tagger (regular expressions, below). Offline,
  deterministic, instant, and used for every evaluation.
- `LLMStrategyJudge`: an optional LLM judge behind any OpenAI-compatible endpoint (the same
  `openai` client the LLM simulator uses), prompted with `prompts/strategy_judge.j2`. Slower and
  model-dependent, but it reads meaning rather than phrases.

The rule-based cues are written for analysis and kept apart from the built-in simulator's
scoring cues on purpose: a tagger that reused the reward's own patterns would only echo what the
reward already saw, and with an LLM simulator there is no such reward to lean on.

## Taxonomy

| strategy | group | a turn gets it when it ... | example cues |
|---|---|---|---|
| `deep_empathy` | emotional | reflects the person's feeling or experience back to them | "it sounds like", "I can imagine", "you must feel", "that must have been", "I can tell how" |
| `validation` | emotional | says the feeling or reaction is legitimate | "makes sense", "understandable", "anyone would", "it's okay to feel", "no wonder", "valid" |
| `praise` | emotional | affirms something specific the person did or is | "took courage", "I admire", "you handled it well", "not everyone would", "proud of you" |
| `reassurance` | emotional | tells them they are not to blame | "not your fault", "you did nothing wrong", "you had every right", "you didn't deserve" |
| `self_disclosure` | emotional | shares the speaker's own similar experience | "I've been there", "happened to me", "when I was", "I went through" |
| `questioning` | exploring | asks the person something (a sentence ending in "?") | "What has been the hardest part?" |
| `guided_reflection` | exploring | invites them to look at their own part, lessons or values | "looking back", "what did you learn", "next time", "what matters to you" |
| `reframing` | rational | offers another way to see the situation or weighs sides | "on the other hand", "at the same time", "two things can be true", "another way to look at" |
| `perspective` | rational | explains why other people may have acted as they did | "maybe they", "from their side", "they might have", "probably because" |
| `advice` | solution | suggests a concrete action | "you could try", "I'd suggest", "one step", "it might help to", "make a plan" |
| `platitude` | harmful | offers stock comfort instead of engagement | "everything happens for a reason", "don't worry", "stay positive", "it'll be fine" |
| `dismissal` | harmful | minimises the problem or blames the person | "move on", "not a big deal", "get over it", "your own fault", "you're overreacting" |

Chinese replies are tagged with the same taxonomy from the Chinese cues of
`agents.replies.strategies_zh` (matched next to the English ones; they never match English text).

A turn can carry several strategies (or none). Matching is case-insensitive on the visible
reply (a `<think>` block is never tagged). `style_of(tags)` sums a turn up as `empathic`
(any emotional strategy), `solution` (advice), `rational`, `exploring` and `harmful`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from agents.replies.endpoint import AgentAuthError, AgentError, ChatEndpoint
from agents.replies.strategies_zh import RULES_ZH
from sage_gym._loop import run_sync
from sage_gym.prompts import default_prompts
from sage_gym.thinking import split_think

STRATEGY_GROUPS: Mapping[str, str] = {
    "deep_empathy": "emotional",
    "validation": "emotional",
    "praise": "emotional",
    "reassurance": "emotional",
    "self_disclosure": "emotional",
    "questioning": "exploring",
    "guided_reflection": "exploring",
    "reframing": "rational",
    "perspective": "rational",
    "advice": "solution",
    "platitude": "harmful",
    "dismissal": "harmful",
}
STRATEGIES = tuple(STRATEGY_GROUPS)
STYLES = ("empathic", "exploring", "rational", "solution", "harmful")
_STYLE_OF_GROUP = {"emotional": "empathic", "exploring": "exploring", "rational": "rational", "solution": "solution", "harmful": "harmful"}

_FEELING = (
    r"(?:hurt|angry|furious|sad|lonely|alone|exhausted|drained|worn out|frustrated|overwhelmed|scared|afraid|anxious|"
    r"ashamed|embarrassed|betrayed|let down|disappointed|helpless|stuck|invisible|heartbroken|crushed|tired|upset|"
    r"resentful|guilty|humiliated|devastated|confused|torn|bitter|jealous|unseen|unheard|numb|lost)"
)

RULES: Mapping[str, tuple[str, ...]] = {
    "deep_empathy": (
        r"\b(it|that|this) sounds (really|so|incredibly|awful|painful|hard|exhausting|lonely|difficult|frustrating|overwhelming|heartbreaking)\b",
        r"\bit sounds like\b",
        r"\bsounds like (you|it|that|this|a lot|such|the whole|things)\b",
        r"\bi can (imagine|see|tell|hear|only imagine)\b",
        r"\byou (must|might) (feel|be feeling|have felt|be)\b",
        r"\bthat (must|would) (be|have been|feel|hurt)\b",
        r"\byou('re| are) (feeling|carrying|holding)\b",
        r"\bi hear (you|how|that)\b",
        r"\bwhat i'?m hearing\b",
        r"\bhit you hard(er)?\b",
        r"\bsitting with you\b",
        r"\bleft you feeling\b",
        rf"\bhow {_FEELING} you\b",
    ),
    "validation": (
        r"\bmakes? (complete |total |perfect |a lot of )?sense\b",
        r"\b(completely |totally |very )?understandable\b",
        r"\banyone (in your (place|shoes|position) )?would\b",
        r"\bof course you('d| would| are| feel)\b",
        r"\bit'?s (okay|ok|normal|natural|human|fair|alright) to\b",
        r"\byour (feelings|reaction|anger|frustration) (is|are) (valid|legitimate|fair|understandable)\b",
        r"\bno wonder\b",
        r"\b(right|entitled) to feel\b",
        r"\banyone would feel\b",
    ),
    "praise": (
        r"\b(took|takes|showed|shows) (real |a lot of |so much )?(courage|guts|strength|care|integrity|patience)\b",
        r"\bi (really )?(admire|respect)\b",
        r"\byou (did|handled|managed) (that |it |this |so |really )?(well|right|beautifully|brilliantly)\b",
        r"\b(proud of you|well done|good for you|give yourself credit)\b",
        r"\bnot everyone would\b",
        r"\bspeaks (well )?(of|to) (you|your)\b",
        r"\bthat was (brave|generous|thoughtful|kind|wise|smart|decent|mature)\b",
        r"\bimpressive\b",
    ),
    "reassurance": (
        r"\b(not|isn'?t|wasn'?t) your (own )?fault\b",
        r"\byou (did|have done|'ve done) nothing wrong\b",
        r"\byou('re| are) not to blame\b",
        r"\byou had every right\b",
        r"\byou didn'?t deserve\b",
        r"\bnone of (this|that|it) (is|was) on you\b",
        r"\b(they|he|she) (was|were) (wrong|out of line)\b",
    ),
    "self_disclosure": (
        r"\bi('ve| have) (been|felt) (there|that|the same|like that)\b",
        r"\b(something similar |the same thing |this )?happened to me\b",
        r"\bwhen i was\b",
        r"\bi (went|'ve gone|have gone) through\b",
        r"\bi remember (when|feeling)\b",
        r"\bin my (own )?experience\b",
    ),
    "questioning": (r"\?",),
    "guided_reflection": (
        r"\blooking back\b",
        r"\bwhat (do|did) you (think|learn|notice|make of|take from)\b",
        r"\bwhat would you do differently\b",
        r"\bdifferently next time\b",
        r"\bnext time\b",
        r"\bwhat (does|did) (this|that|it) (teach|tell|show|mean to) you\b",
        r"\bwhat matters (most )?to you\b",
        r"\b(learn|grow|learned|grew|learning|growing) from\b",
        r"\bwhat (it|this|that) taught you\b",
    ),
    "reframing": (
        r"\bon (the other|one) hand\b",
        r"\bat the same time\b",
        r"\btwo things (can be|are) true\b",
        r"\bboth sides\b",
        r"\bthe flip side\b",
        r"\banother way (to|of) (look|see|seeing|looking)\b",
        r"\b(look|see) it as\b",
        r"\bthen again\b",
        r"\bit'?s not (all|entirely|only|just) (black|one|on|about)\b",
        r"\bmessy for everyone\b",
    ),
    "perspective": (
        r"\b(maybe|perhaps|possibly) (he|she|they|the \w+|your \w+|his \w+|her \w+|their \w+) (was|were|is|are|had|has|felt|feel|didn'?t|did|acted|meant|just)\b",
        r"\b(he|she|they) (might|may|could) (have|be|feel|not|think|worry)\b",
        r"\bfrom (his|her|their) (side|perspective|point of view)\b",
        r"\b(his|her|their) own (pressure|fear|reasons?|worries|stuff)\b",
        r"\bprobably because\b",
        r"\bit'?s possible (he|she|they)\b",
        r"\b(acted|did it) out of\b",
    ),
    "advice": (
        r"\byou (could|can|might|should|may want to) (try|consider|start|ask|talk|write|set|make|look|call|book|plan|bring|put|tell|list|contact|speak|reach)\b",
        r"\btry (to|talking|writing|asking|setting|making)\b",
        r"\bconsider \w+ing\b",
        r"\bi('d| would) (suggest|recommend)\b",
        r"\b(my|one) (suggestion|recommendation)\b",
        r"\bone (option|step|idea|thing you could)\b",
        r"\b(first|next|small|concrete) step\b",
        r"\bmake a (short )?plan\b",
        r"\bit (might|may|could|would) help to\b",
        r"\bhere'?s what (you|i)\b",
        r"\bwhat if you\b",
    ),
    "platitude": (
        r"\beverything happens for a reason\b",
        r"\btime heals\b",
        r"\bstay positive\b",
        r"\b(think|be) positive\b",
        r"\blook on the bright side\b",
        r"\bcheer up\b",
        r"\bit'?ll (all )?be (fine|okay|ok|alright)\b",
        r"\bdon'?t worry\b",
        r"\bthings will get better\b",
        r"\bchin up\b",
        r"\bit is what it is\b",
    ),
    "dismissal": (
        r"\bget over it\b",
        r"\bmove on\b",
        r"\b(not a|no) big deal\b",
        r"\bcalm down\b",
        r"\bthat'?s life\b",
        r"\bothers have it worse\b",
        r"\bit could be worse\b",
        r"\bdeal with it\b",
        r"\bstop (complaining|whining)\b",
        r"(?<!not )(?<!n't )(?<!nt )\byour (own )?fault\b",
        r"\byou('re| are) (overreacting|being (dramatic|silly|sensitive|ridiculous))\b",
        r"\bwhat did you expect\b",
        r"\bwho cares\b",
    ),
}
# one alternation per strategy, English and Chinese cues together: a single search tells whether any is present
_COMPILED = {name: re.compile("|".join(f"(?:{p})" for p in (*patterns, *RULES_ZH[name])), re.IGNORECASE) for name, patterns in RULES.items()}
assert tuple(RULES) == STRATEGIES == tuple(RULES_ZH)


@lru_cache(maxsize=8192)  # a dialogue's earlier replies are tagged again at every later turn
def tag_reply(reply: str) -> tuple[str, ...]:
    """The strategies a reply uses, in taxonomy order (rule-based; the `<think>` part is ignored)."""
    _, visible = split_think(reply)
    return tuple(name for name, pattern in _COMPILED.items() if pattern.search(visible))


def style_of(tags: Iterable[str]) -> tuple[str, ...]:
    """The styles of a turn's tags (`empathic`, `exploring`, `rational`, `solution`, `harmful`), in order."""
    present = {_STYLE_OF_GROUP[STRATEGY_GROUPS[t]] for t in tags}
    return tuple(s for s in STYLES if s in present)


def strategy_mix(turn_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Shares of agent turns that use each strategy and each style, over a list of per-turn tag lists.

    Shares are of turns, not of tags: a turn with two strategies counts once for each, so the
    strategy shares can sum to more than 1. `untagged` is the share of turns with no strategy.
    """
    n = len(turn_tags)
    strategies = Counter(t for tags in turn_tags for t in set(tags))
    styles = Counter(s for tags in turn_tags for s in style_of(tags))
    share = (lambda count: round(count / n, 4)) if n else (lambda count: 0.0)
    return {
        "turns": n,
        "strategies": {s: share(strategies[s]) for s in STRATEGIES},
        "styles": {s: share(styles[s]) for s in STYLES},
        "untagged": share(sum(1 for tags in turn_tags if not tags)),
    }


# ----------------------------------------------------------------------------------------------
# the optional LLM judge


class JudgeError(RuntimeError):
    """The LLM judge could not tag a turn (endpoint failure or unusable output after retries)."""


def parse_judge_output(text: str) -> tuple[str, ...]:
    """The strategies named in the judge's JSON answer (`{"strategies": [...]}`), in taxonomy order.

    Raises `ValueError` if the text holds no JSON object with a `strategies` list; labels outside
    the taxonomy are ignored (they are the judge's invention, not a strategy we report).
    """
    _, text = split_think(text)  # reasoning models may think first
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match is None:
        raise ValueError(f"no JSON object in the judge's answer: {text[:200]!r}")
    try:
        answer = json.loads(match.group(0))
    except json.JSONDecodeError as error:
        raise ValueError(f"the judge's answer is not valid JSON ({error.msg}): {text[:200]!r}") from None
    labels = answer.get("strategies") if isinstance(answer, dict) else None
    if not isinstance(labels, list):
        raise ValueError(f"the judge's answer has no 'strategies' list: {text[:200]!r}")
    named = {str(label).strip().lower().replace(" ", "_").replace("-", "_") for label in labels}
    return tuple(s for s in STRATEGIES if s in named)


class LLMStrategyJudge:
    """Tags agent turns with an LLM behind an OpenAI-compatible endpoint.

    The judge sees the user's message before the reply and the reply itself (its `<think>` part
    removed), with the taxonomy above, and answers `{"strategies": [...]}`. Requests run
    concurrently; each is retried with backoff on endpoint errors and on unusable answers
    (`agents.replies.endpoint.ChatEndpoint`), then gives a `JudgeError` naming the endpoint and model;
    an endpoint that refuses the key (401/403) raises `AgentAuthError` at once and stops the run.
    The API key is read from the environment variable `api_key_env` and never appears in
    manifests or errors.
    """

    kind = "llm_judge"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 256,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 16,
    ) -> None:
        self.endpoint = ChatEndpoint(base_url, model, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries, max_concurrency=max_concurrency)
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.endpoint.manifest(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prompt": JUDGE_TEMPLATE,
            "prompt_sha256": judge_prompt_sha256(),
        }

    def messages(self, user_message: str, reply: str) -> list[dict[str, str]]:
        _, visible = split_think(reply)
        prompt = default_prompts().render(JUDGE_TEMPLATE, strategies=_taxonomy_for_prompt(), user_message=user_message, reply=visible)
        return [{"role": "user", "content": prompt}]

    async def atag(self, user_message: str, reply: str) -> tuple[str, ...]:
        """The strategies of one reply, given the user's message it answers; raises `JudgeError`."""
        try:
            return await self.endpoint.complete(
                self.messages(user_message, reply), parse=parse_judge_output, temperature=self.temperature, max_tokens=self.max_tokens
            )
        except AgentAuthError as error:  # a refused key fails every turn: stop, do not record it turn by turn
            raise AgentAuthError(f"strategy judge {error}") from None
        except AgentError as error:
            raise JudgeError(f"strategy judge {error}") from None

    async def atag_turns(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, ...] | JudgeError]:
        """Tags for many (user message, reply) pairs, concurrently; a failed pair gives its `JudgeError`."""
        async def settle(user_message: str, reply: str) -> tuple[str, ...] | JudgeError:
            try:
                return await self.atag(user_message, reply)
            except JudgeError as error:
                return error

        return list(await asyncio.gather(*(settle(u, r) for u, r in pairs)))

    def tag_turns(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, ...] | JudgeError]:
        """Synchronous `atag_turns` (runs on sage_gym's background event loop)."""
        return run_sync(self.atag_turns(pairs))


_DESCRIPTIONS = {
    "deep_empathy": "reflects the person's feeling or experience back to them, showing it was understood",
    "validation": "says the person's feeling or reaction is legitimate or understandable",
    "praise": "affirms something specific the person did or a strength they showed",
    "reassurance": "tells the person they are not to blame",
    "self_disclosure": "shares the speaker's own similar experience",
    "questioning": "asks the person a question",
    "guided_reflection": "invites the person to reflect on their own part, lessons or values",
    "reframing": "offers another way to see the situation, or weighs several sides of it",
    "perspective": "explains why other people in the story may have acted as they did",
    "advice": "suggests a concrete action to take",
    "platitude": "offers stock comfort instead of engaging (e.g. 'everything happens for a reason')",
    "dismissal": "minimises the problem or blames the person",
}
assert tuple(_DESCRIPTIONS) == STRATEGIES
JUDGE_TEMPLATE = "strategy_judge.j2"


def _taxonomy_for_prompt() -> list[dict[str, str]]:
    return [{"name": name, "description": _DESCRIPTIONS[name]} for name in STRATEGIES]


def judge_prompt_sha256() -> str:
    """Hash of the judge's template and the taxonomy it is shown: identifies the judge prompt in manifests."""
    digest = hashlib.sha256((default_prompts().folder / JUDGE_TEMPLATE).read_bytes())
    digest.update(json.dumps(_taxonomy_for_prompt(), sort_keys=True).encode())
    return digest.hexdigest()
