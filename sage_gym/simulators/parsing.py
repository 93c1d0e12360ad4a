"""Lenient parsing of a simulator LLM's answers, with strict validation of what comes out.

An LLM asked for `{"change": 5, ...}` or for `Change: +5` lines answers in many shapes: inside
code fences, after a sentence of prose, behind a `<think>` block, with `**Change:**` in bold,
full-width colons (`Change：+5`), keys in any case, `"+5"` as a string, `"Change: +5 points"`.
The parser accepts all of these, whatever response format the server promised, and then
validates: a change must be an integer (it is clipped to the rules' range), a reply must be a
non-empty string, `leaves` must read as yes or no.

Anything that cannot be read raises `ParseError` (a `SimulatorError`) and nothing else, so the
caller can retry the call; tests feed the parsers arbitrary text to hold them to that.

| answer        | required     | optional                                |
|---------------|--------------|-----------------------------------------|
| emotion update| `change`     | `meaning`, `goal`, `thoughts`, `feeling`|
| user reply    | `reply`      | `leaves` (default no)                   |
| single call   | both of the above                              ||
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sage_gym.simulators.base import SimulatorError
from sage_gym.thinking import split_think

MAX_ANSWER_CHARS = 100_000  # an answer longer than this is a runaway generation, not an answer
MAX_JSON_CANDIDATES = 32  # how many "{" positions to try as the start of the JSON object

EMOTION_FIELDS = ("meaning", "goal", "thoughts", "feeling", "change")
REPLY_FIELDS = ("reply", "leaves")

# Other names models use for the same fields (compared after `_normalise_key`).
ALIASES = {
    "thought": "thoughts",
    "inner_thoughts": "thoughts",
    "inner_thought": "thoughts",
    "feelings": "feeling",
    "emotion_change": "change",
    "change_in_emotion": "change",
    "delta": "change",
    "emotion_delta": "change",
    "message": "reply",
    "response": "reply",
    "user_reply": "reply",
    "your_message": "reply",
    "next_message": "reply",
    "leave": "leaves",
    "ends_conversation": "leaves",
    "end_conversation": "leaves",
    "goodbye": "leaves",
}

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
# A tagged line: optional list/quote/heading marks and bold, a label, a colon (ASCII or
# full-width), then the value. Labels are short words; the value is everything after the colon.
_TAGGED_LINE = re.compile(r"^[\s>#*\-•]*\**\s*([A-Za-z][A-Za-z _-]{0,30}?)\s*\**\s*[:：﹕]\s*(?:\*\*)?\s*(.*)$")
_SIGNED_INT = re.compile(r"([+\-])?\s*(\d{1,6})(?:[.,]\d+)?")
_DOWN_WORDS = re.compile(r"\b(?:down|decrease[sd]?|drops?|dropped|lower(?:s|ed)?|falls?|fell|minus|negative|loses?|lost)\b")
_ZERO_WORDS = re.compile(r"^(?:no change|none|nothing|zero|unchanged|same|neutral)\b")
_YES = frozenset({"yes", "y", "true", "1", "leave", "leaves", "leaving", "ends", "end"})
_NO = frozenset({"no", "n", "false", "0", "stay", "stays", "none", "continue", "continues"})
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」"}


class ParseError(SimulatorError):
    """The simulator's answer could not be read; retrying the call may help."""


@dataclass(frozen=True)
class EmotionUpdate:
    """The first half of a user turn: how the agent's reply landed. `change` is already clipped."""

    change: int
    thoughts: str = ""
    meaning: str = ""
    goal: str = ""
    feeling: str = ""


@dataclass(frozen=True)
class UserReply:
    """The second half of a user turn: the user's message and whether they end the dialogue."""

    reply: str
    leaves: bool = False


# ----------------------------------------------------------------------------------------------
# public entry points


def parse_emotion_update(text: Any, change_clip: tuple[int, int]) -> EmotionUpdate:
    """Read an emotion-update answer; the change is clipped to `change_clip`."""
    fields = read_fields(text, EMOTION_FIELDS, required=("change",))
    return _emotion_update(fields, change_clip)


def parse_user_reply(text: Any) -> UserReply:
    """Read a reply answer: the user's message (non-empty) and whether they leave."""
    fields = read_fields(text, REPLY_FIELDS, required=("reply",))
    return _user_reply(fields)


def parse_single_call(text: Any, change_clip: tuple[int, int]) -> tuple[EmotionUpdate, UserReply]:
    """Read a one-call answer that carries both halves of the turn."""
    fields = read_fields(text, EMOTION_FIELDS + REPLY_FIELDS, required=("change", "reply"))
    return _emotion_update(fields, change_clip), _user_reply(fields)


def parse_change(value: Any, change_clip: tuple[int, int]) -> int:
    """A signed integer from an int, a float, or text such as "+5", "-5 points", "Change: +10"."""
    low, high = change_clip
    if isinstance(value, bool):
        raise ParseError(f"change must be an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ParseError(f"change must be a finite number, got {value!r}")
        number = round(value)
    elif isinstance(value, str):
        number = _change_from_text(value)
    else:
        raise ParseError(f"change must be an integer, got {type(value).__name__}")
    return min(high, max(low, number))


def parse_leaves(value: Any) -> bool:
    """True/false from a JSON bool, 0/1, or words like "yes", "no", "true", "false"."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = _strip_decoration(unicodedata.normalize("NFKC", value)).lower()
        if not text:
            return False
        first = re.split(r"[\s,.;:!()]+", text, maxsplit=1)[0]
        if first in _YES:
            return True
        if first in _NO:
            return False
    raise ParseError(f"leaves must be yes or no, got {_snippet(value)}")


# ----------------------------------------------------------------------------------------------
# reading fields out of JSON or tagged text


def read_fields(text: Any, names: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """The known fields of an answer, from its JSON object if it has one, else from `Label: value` lines.

    Keys are matched case-insensitively (and through `ALIASES`); unknown keys are ignored.
    Raises ParseError when a required field is missing from both readings.
    """
    if not isinstance(text, str):
        raise ParseError(f"the answer must be text, got {type(text).__name__}")
    if len(text) > MAX_ANSWER_CHARS:
        raise ParseError(f"the answer is {len(text)} characters long, more than {MAX_ANSWER_CHARS}; the model ran away")
    wanted = tuple(names)
    _, visible = split_think(text)  # a reasoning model's <think> block is not the answer
    body = _FENCE.sub("", visible).strip()
    if not body:
        raise ParseError("the answer is empty")
    fields = _json_fields(body, wanted)
    missing = [name for name in required if name not in fields]
    if missing:
        tagged = _tagged_fields(body, wanted)
        for name, value in tagged.items():
            fields.setdefault(name, value)
        missing = [name for name in required if name not in fields]
    if missing:
        raise ParseError(f"the answer has no {' or '.join(repr(m) for m in missing)} field: {_snippet(text)}")
    return fields


def _json_fields(body: str, wanted: tuple[str, ...]) -> dict[str, Any]:
    """Fields of the first JSON object in `body` that has any wanted key (prose around it is fine)."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"\{", body)][:MAX_JSON_CANDIDATES]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(body, start)
        except (ValueError, RecursionError):  # not JSON here, or absurdly deep nesting
            continue
        if not isinstance(value, dict):
            continue
        fields = {}
        for key, item in value.items():
            name = _canonical(key) if isinstance(key, str) else None
            if name in wanted and name not in fields:
                fields[name] = item
        if fields:
            return fields
    return {}


def _tagged_fields(body: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """Fields of `Label: value` lines; a value runs on over following lines until the next known label."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in body.split("\n"):
        match = _TAGGED_LINE.match(line)
        name = _canonical(match.group(1)) if match else None
        if match and name in wanted and name not in fields:
            current = name
            fields[name] = [match.group(2)]
        elif match and name in wanted:
            current = None  # a repeated label: keep the first answer, ignore the rest
        elif current is not None:
            fields[current].append(line)
    return {name: _strip_decoration("\n".join(lines)) for name, lines in fields.items()}


# ----------------------------------------------------------------------------------------------
# validation


def _emotion_update(fields: Mapping[str, Any], change_clip: tuple[int, int]) -> EmotionUpdate:
    return EmotionUpdate(
        change=parse_change(fields["change"], change_clip),
        thoughts=_text(fields.get("thoughts")),
        meaning=_text(fields.get("meaning")),
        goal=_text(fields.get("goal")),
        feeling=_text(fields.get("feeling")),
    )


def _user_reply(fields: Mapping[str, Any]) -> UserReply:
    reply = fields["reply"]
    if not isinstance(reply, str):
        raise ParseError(f"reply must be a string, got {type(reply).__name__}")
    reply = _strip_decoration(reply)
    if not reply:
        raise ParseError("reply is empty")
    return UserReply(reply=reply, leaves=parse_leaves(fields.get("leaves")))


def _change_from_text(value: str) -> int:
    text = unicodedata.normalize("NFKC", value).strip().lower()
    text = text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", "-")  # minus sign, dashes
    text = re.sub(r"^(?:emotion\s*)?change\s*[:=]?\s*", "", text)  # "Change: +5" repeated inside the value
    match = _SIGNED_INT.search(text)
    if match:
        negative = match.group(1) == "-" or (match.group(1) is None and _DOWN_WORDS.search(text[: match.start()]) is not None)
        return -int(match.group(2)) if negative else int(match.group(2))
    if _ZERO_WORDS.match(_strip_decoration(text)):
        return 0
    raise ParseError(f"change must be a signed integer, got {_snippet(value)}")


def _canonical(key: str) -> str:
    name = re.sub(r"[\s\-]+", "_", unicodedata.normalize("NFKC", key).strip().strip("*_\"'`").lower())
    return ALIASES.get(name, name)


def _strip_decoration(value: str) -> str:
    """Trim whitespace, markdown bold and one pair of matching quotes around a value."""
    text = value.strip()
    while text.startswith("**") and text.endswith("**") and len(text) >= 4:
        text = text[2:-2].strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _strip_decoration(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(v.strip() for v in value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):  # absurdly deep nesting
        return ""


def _snippet(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
