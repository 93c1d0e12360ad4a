"""The scenario record: the intentions and character types, `Scenario` and its parts, and the
validation of a JSON record into one (`Scenario.from_dict`). Errors name the file, line and field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sage_gym._frozen import FrozenDict, freeze

# The 8 hidden intentions of SAGE, rational group first. Keys are stable identifiers; the value is
# the English statement the simulator is given (second person, as SAGE phrases it).
RATIONAL_INTENTIONS = ("dialectical_analysis", "concrete_advice", "others_motives", "self_reflection")
EMOTIONAL_INTENTIONS = ("specific_praise", "venting", "deep_empathy", "no_blame")
HIDDEN_INTENTIONS = RATIONAL_INTENTIONS + EMOTIONAL_INTENTIONS
CUSTOM_INTENTION = "custom"  # a free-text intention that is none of the eight

INTENTION_TEXT = FrozenDict(
    {
        "dialectical_analysis": "You want the other person to analyse the problems in the events dialectically, from more than one side.",
        "concrete_advice": "You want real, concrete advice that actually helps you out of your current predicament.",
        "others_motives": "You want to understand why the other people in the events acted the way they did.",
        "self_reflection": "You want to be guided to reflect on the events yourself and grow from them.",
        "specific_praise": "You want sincere praise for the specific things you did in the events.",
        "venting": "You want to be listened to attentively while you vent your emotions.",
        "deep_empathy": "You want the other person to deeply empathise with your feelings, not just comfort you.",
        "no_blame": "You believe you bear no responsibility or fault at all in the events, and you want the other person to agree.",
    }
)

# SAGE's exact task strings (the SAGE import in docs/scenarios.md), in the order of HIDDEN_INTENTIONS.
SAGE_TASKS = FrozenDict(
    dict(
        zip(
            (
                "你希望对方辩证地分析事件中的问题",
                "你想获得能真实帮助你解决当下困境的建议",
                "你想分析事件中其他人物这么做的原因",
                "你希望对方引导你针对事件进行自我反思，收获自我成长",
                "你希望对方真诚地夸奖你在事件中的具体行为",
                "你希望对方用心倾听你的情绪宣泄",
                "你希望对方深刻共情你的感受，而不是简单的安慰",
                "你认为自己在事件中没有任何责任和错误，你想要对方也认同你没有错",
            ),
            HIDDEN_INTENTIONS,
            strict=True,
        )
    )
)

CHARACTER_TYPES = ("negative", "passive", "avoidant")
SAGE_CHARACTER_TYPES = FrozenDict({"负面型": "negative", "被动型": "passive", "回避型": "avoidant"})
SAGE_THEME_MARKER = "\n####隐藏主题:\n***"
SPEAKER_STYLES = ("active", "passive")
# The shipped splits: the English library and the Chinese one (SAGE and RLVER are Chinese), and
# `probes`, users of both languages who press for agreement with a false belief or a harmful plan
# (agents.eval.probes). A split name maps to personas/<name with "-" as "_">.jsonl.
SPLITS = ("train", "eval", "train-zh", "eval-zh", "probes")


class ScenarioError(ValueError):
    """A scenario file or record is invalid. The message names the file, the line and the field."""


@dataclass(frozen=True)
class Persona:
    name: str
    age: int
    sex: str
    occupation: str
    hobbies: tuple[str, ...] = ()
    habits: tuple[str, ...] = ()
    speaking_style: str = ""
    speaker: str = "passive"  # "active" or "passive" speaker


@dataclass(frozen=True)
class Background:
    """What happened to the user and how they talk about it.

    `story` is the only required field (imported SAGE scenes carry only that); the library of
    our own scenarios fills all of them. `details` are short first-person sentences the user can
    reveal as the conversation goes on (the built-in simulator uses them to compose replies).
    """

    story: str
    conflict: str = ""
    tried: str = ""
    talk_high: str = ""
    talk_medium: str = ""
    talk_low: str = ""
    lifts: str = ""
    sinks: str = ""
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    id: str
    persona: Persona
    background: Background
    character_type: str
    character_traits: tuple[str, ...]
    hidden_intention: str
    first_message: str
    intention_text: str = ""  # defaults to INTENTION_TEXT[hidden_intention]
    language: str = "en"
    domain: str = ""
    extras: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        if not self.intention_text and self.hidden_intention in INTENTION_TEXT:
            object.__setattr__(self, "intention_text", INTENTION_TEXT[self.hidden_intention])
        object.__setattr__(self, "extras", freeze(self.extras))
        bad = _unencodable_field(self)
        if bad is not None:  # it would fail later, in a prompt or a transcript, after a dialogue began
            raise ScenarioError(f"scenario {self.id.encode('utf-8', 'backslashreplace').decode()!r}: field '{bad}': not valid Unicode text (a lone surrogate)")

    @property
    def intention_group(self) -> str:
        if self.hidden_intention in RATIONAL_INTENTIONS:
            return "rational"
        if self.hidden_intention in EMOTIONAL_INTENTIONS:
            return "emotional"
        return CUSTOM_INTENTION

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record of this scenario (round-trips through `Scenario.from_dict`)."""
        record = dataclasses.asdict(self)
        record["extras"] = dict(self.extras)
        for key in ("hobbies", "habits"):
            record["persona"][key] = list(record["persona"][key])
        record["background"]["details"] = list(record["background"]["details"])
        record["character_traits"] = list(self.character_traits)
        return record

    @classmethod
    def from_dict(cls, record: Any, where: str = "<record>") -> Scenario:
        """Validate a JSON record and build a Scenario; errors name `where` and the field."""
        return _parse_scenario(record, where)


# ----------------------------------------------------------------------------------------------
# validation


def _fail(where: str, field_name: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{where}: field '{field_name}': {problem}")


def _get(record: Mapping, key: str, kind: type | tuple, where: str, prefix: str = "", required: bool = True, default: Any = None) -> Any:
    name = f"{prefix}{key}"
    if key not in record:
        if required:
            raise _fail(where, name, "is missing")
        return default
    value = record[key]
    if kind is int and isinstance(value, bool):
        raise _fail(where, name, f"expected an integer, got {value!r}")
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(where, name, f"expected {expected}, got {type(value).__name__}")
    if isinstance(value, str) and required and not value.strip():
        raise _fail(where, name, "must not be empty")
    return value


def _str_list(record: Mapping, key: str, where: str, prefix: str = "") -> tuple[str, ...]:
    values = _get(record, key, list, where, prefix, required=False, default=[])
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item.strip():
            raise _fail(where, f"{prefix}{key}[{i}]", f"expected a non-empty string, got {item!r}")
    return tuple(values)


def _check_keys(record: Mapping, allowed: Iterable[str], where: str, prefix: str = "") -> None:
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise _fail(where, f"{prefix}{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


MAX_NESTING = 32  # levels of objects and lists in a scenario record (extras included)


def _depth(value: Any) -> int:
    """How deeply dicts and lists nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _unencodable_field(scenario: Scenario) -> str | None:
    """The field of `scenario` holding a string UTF-8 cannot encode, else None (fast when there is none)."""
    parts = [scenario.persona, scenario.background]
    strings = [v for part in parts for v in vars(part).values() if isinstance(v, str)]
    strings += [v for part in parts for v in vars(part).values() if isinstance(v, tuple) for v in v]
    strings += [v for k, v in vars(scenario).items() if isinstance(v, str)] + list(scenario.character_traits)
    try:
        "\n".join(s for s in strings if isinstance(s, str)).encode("utf-8")
        if _unencodable_text(dict(scenario.extras)) is None:
            return None
    except UnicodeEncodeError:
        pass
    return _unencodable_text(scenario.to_dict())


def _unencodable_text(value: Any) -> str | None:
    """The path of the first string (key or value) in nested dicts and lists that UTF-8 cannot encode, else None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # iterative: records can nest deeply
        path, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path or "<value>"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                name = str(key).encode("utf-8", "backslashreplace").decode()
                if isinstance(key, str) and _unencodable_text(key) is not None:
                    return f"{path}.{name}" if path else name
                stack.append((f"{path}.{name}" if path else name, child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _parse_scenario(record: Any, where: str) -> Scenario:
    # the fields are read in this order, so the first error reported is the first bad field
    _check_record(record, where)
    sid = _get(record, "id", str, where)
    persona = _parse_persona(_get(record, "persona", Mapping, where), where)
    background = _parse_background(_get(record, "background", Mapping, where), where)
    character_type = _parse_character_type(record, where)
    traits = _str_list(record, "character_traits", where)
    intention, intention_text = _parse_intention(record, where)
    return Scenario(
        id=sid,
        persona=persona,
        background=background,
        character_type=character_type,
        character_traits=traits,
        hidden_intention=intention,
        first_message=_get(record, "first_message", str, where),
        intention_text=intention_text,
        language=_get(record, "language", str, where, required=False, default="en"),
        domain=_get(record, "domain", str, where, required=False, default=""),
        extras=_get(record, "extras", Mapping, where, required=False, default={}),
    )


def _check_record(record: Any, where: str) -> None:
    """A JSON object of valid text, nested within bounds, with no field a Scenario does not have."""
    if not isinstance(record, Mapping):
        raise ScenarioError(f"{where}: expected a JSON object, got {type(record).__name__}")
    bad = _unencodable_text(record)
    if bad is not None:
        raise _fail(where, bad, "not valid Unicode text (a lone surrogate, e.g. the escape \\ud800)")
    if _depth(record) > MAX_NESTING:  # deeper would fail later, when the set is copied or hashed
        raise ScenarioError(f"{where}: the record is nested too deeply (more than {MAX_NESTING} levels)")
    _check_keys(record, [f.name for f in dataclasses.fields(Scenario)], where)


def _parse_persona(persona_rec: Mapping, where: str) -> Persona:
    _check_keys(persona_rec, [f.name for f in dataclasses.fields(Persona)], where, "persona.")
    age = _get(persona_rec, "age", int, where, "persona.")
    if not 5 <= age <= 120:
        raise _fail(where, "persona.age", f"must be between 5 and 120, got {age}")
    speaker = _get(persona_rec, "speaker", str, where, "persona.", required=False, default="passive")
    if speaker not in SPEAKER_STYLES:
        raise _fail(where, "persona.speaker", f"must be one of {SPEAKER_STYLES}, got {speaker!r}")
    return Persona(
        name=_get(persona_rec, "name", str, where, "persona."),
        age=age,
        sex=_get(persona_rec, "sex", str, where, "persona."),
        occupation=_get(persona_rec, "occupation", str, where, "persona."),
        hobbies=_str_list(persona_rec, "hobbies", where, "persona."),
        habits=_str_list(persona_rec, "habits", where, "persona."),
        speaking_style=_get(persona_rec, "speaking_style", str, where, "persona.", required=False, default=""),
        speaker=speaker,
    )


def _parse_background(bg_rec: Mapping, where: str) -> Background:
    _check_keys(bg_rec, [f.name for f in dataclasses.fields(Background)], where, "background.")
    optional_text = ("conflict", "tried", "talk_high", "talk_medium", "talk_low", "lifts", "sinks")
    return Background(
        story=_get(bg_rec, "story", str, where, "background."),
        details=_str_list(bg_rec, "details", where, "background."),
        **{k: _get(bg_rec, k, str, where, "background.", required=False, default="") for k in optional_text},
    )


def _parse_character_type(record: Mapping, where: str) -> str:
    character_type = _get(record, "character_type", str, where)
    if character_type not in CHARACTER_TYPES:
        raise _fail(where, "character_type", f"must be one of {CHARACTER_TYPES}, got {character_type!r}")
    return character_type


def _parse_intention(record: Mapping, where: str) -> tuple[str, str]:
    """The hidden intention and its text (required for a custom intention)."""
    intention = _get(record, "hidden_intention", str, where)
    intention_text = _get(record, "intention_text", str, where, required=False, default="")
    if intention not in HIDDEN_INTENTIONS + (CUSTOM_INTENTION,):
        raise _fail(where, "hidden_intention", f"must be one of {HIDDEN_INTENTIONS + (CUSTOM_INTENTION,)}, got {intention!r}")
    if intention == CUSTOM_INTENTION and not intention_text.strip():
        raise _fail(where, "intention_text", "is required when hidden_intention is 'custom'")
    return intention, intention_text
