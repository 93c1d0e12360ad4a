"""Scenarios: the simulated users of SageDialogue (persona, background, character, hidden intention).

A scenario is an immutable record loaded and validated in one place. Files are JSONL, one
scenario per line, in the nested format of `Scenario.to_dict()`; `personas/train.jsonl`,
`personas/eval.jsonl` and the Chinese `train_zh.jsonl`, `eval_zh.jsonl` are the named splits
(`train`, `eval`, `train-zh`, `eval-zh`) that ship with the package. SAGE-format profiles
(`id, player, scene, main_cha, cha_group, task, first_talk`) are imported by `from_sage`.

    >>> from sage_gym.scenarios import load_split
    >>> scenarios = load_split("eval")
    >>> scenarios.sample(seed=0).hidden_intention in HIDDEN_INTENTIONS
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from sage_gym._frozen import FrozenDict, freeze
from sage_gym.resources import data_path

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
    if not isinstance(record, Mapping):
        raise ScenarioError(f"{where}: expected a JSON object, got {type(record).__name__}")
    bad = _unencodable_text(record)
    if bad is not None:
        raise _fail(where, bad, "not valid Unicode text (a lone surrogate, e.g. the escape \\ud800)")
    if _depth(record) > MAX_NESTING:  # deeper would fail later, when the set is copied or hashed
        raise ScenarioError(f"{where}: the record is nested too deeply (more than {MAX_NESTING} levels)")
    _check_keys(record, [f.name for f in dataclasses.fields(Scenario)], where)

    sid = _get(record, "id", str, where)
    persona_rec = _get(record, "persona", Mapping, where)
    _check_keys(persona_rec, [f.name for f in dataclasses.fields(Persona)], where, "persona.")
    age = _get(persona_rec, "age", int, where, "persona.")
    if not 5 <= age <= 120:
        raise _fail(where, "persona.age", f"must be between 5 and 120, got {age}")
    speaker = _get(persona_rec, "speaker", str, where, "persona.", required=False, default="passive")
    if speaker not in SPEAKER_STYLES:
        raise _fail(where, "persona.speaker", f"must be one of {SPEAKER_STYLES}, got {speaker!r}")
    persona = Persona(
        name=_get(persona_rec, "name", str, where, "persona."),
        age=age,
        sex=_get(persona_rec, "sex", str, where, "persona."),
        occupation=_get(persona_rec, "occupation", str, where, "persona."),
        hobbies=_str_list(persona_rec, "hobbies", where, "persona."),
        habits=_str_list(persona_rec, "habits", where, "persona."),
        speaking_style=_get(persona_rec, "speaking_style", str, where, "persona.", required=False, default=""),
        speaker=speaker,
    )

    bg_rec = _get(record, "background", Mapping, where)
    _check_keys(bg_rec, [f.name for f in dataclasses.fields(Background)], where, "background.")
    optional_text = ("conflict", "tried", "talk_high", "talk_medium", "talk_low", "lifts", "sinks")
    background = Background(
        story=_get(bg_rec, "story", str, where, "background."),
        details=_str_list(bg_rec, "details", where, "background."),
        **{k: _get(bg_rec, k, str, where, "background.", required=False, default="") for k in optional_text},
    )

    character_type = _get(record, "character_type", str, where)
    if character_type not in CHARACTER_TYPES:
        raise _fail(where, "character_type", f"must be one of {CHARACTER_TYPES}, got {character_type!r}")
    traits = _str_list(record, "character_traits", where)
    intention = _get(record, "hidden_intention", str, where)
    intention_text = _get(record, "intention_text", str, where, required=False, default="")
    if intention not in HIDDEN_INTENTIONS + (CUSTOM_INTENTION,):
        raise _fail(where, "hidden_intention", f"must be one of {HIDDEN_INTENTIONS + (CUSTOM_INTENTION,)}, got {intention!r}")
    if intention == CUSTOM_INTENTION and not intention_text.strip():
        raise _fail(where, "intention_text", "is required when hidden_intention is 'custom'")
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


# ----------------------------------------------------------------------------------------------
# sets, files and splits


class ScenarioSet(Sequence):  # of Scenario; unparameterised, since `in` also takes an id
    """An ordered collection of scenarios with unique ids, deterministic sampling and a content hash."""

    def __init__(self, scenarios: Iterable[Scenario], name: str = "") -> None:
        self.name = name
        self._items = tuple(scenarios)
        self._by_id: dict[str, Scenario] = {}
        for s in self._items:
            if s.id in self._by_id:
                raise ScenarioError(f"{name or 'scenario set'}: duplicate scenario id {s.id!r}")
            self._by_id[s.id] = s
        if not self._items:
            raise ScenarioError(f"{name or 'scenario set'}: no scenarios")

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._items)

    @overload
    def __getitem__(self, index: int) -> Scenario: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Scenario, ...]: ...
    def __getitem__(self, index: int | slice) -> Scenario | tuple[Scenario, ...]:
        return self._items[index]

    def __contains__(self, item: object) -> bool:  # a Scenario or its id
        return (item.id if isinstance(item, Scenario) else item) in self._by_id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self._items)

    def get(self, scenario_id: str) -> Scenario:
        if not isinstance(scenario_id, str):
            raise TypeError(f"a scenario id is a str, got {type(scenario_id).__name__} {scenario_id!r}")
        try:
            return self._by_id[scenario_id]
        except KeyError:
            close = [i for i in self._by_id if scenario_id.lower() in i.lower()][:5]
            hint = f"; similar ids: {', '.join(close)}" if close else ""
            raise KeyError(f"unknown scenario id {scenario_id!r} in {self.name or 'scenario set'} ({len(self)} scenarios){hint}") from None

    def sample(self, rng: np.random.Generator | None = None, seed: int | None = None) -> Scenario:
        """One scenario drawn uniformly; the same seed (or generator state) gives the same one."""
        rng = rng if rng is not None else np.random.default_rng(seed)
        return self._items[int(rng.integers(len(self._items)))]

    def filter(self, **conditions: Any) -> ScenarioSet:
        """Scenarios whose attributes equal the given values, e.g. `filter(hidden_intention="venting")`."""
        kept = [s for s in self._items if all(getattr(s, k) == v for k, v in conditions.items())]
        return ScenarioSet(kept, name=f"{self.name}[{conditions}]")

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of every scenario, in order: identifies the set in manifests."""
        digest = hashlib.sha256()
        for s in self._items:
            digest.update(json.dumps(s.to_dict(), sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"ScenarioSet({self.name!r}, {len(self)} scenarios)"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; bad UTF-8, bad JSON or absurd nesting name the file and line."""
    path = Path(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ScenarioError(f"{path}:{lineno}: not UTF-8 text: {err.reason} at byte {err.start} of the line") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ScenarioError(f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
            except RecursionError:
                raise ScenarioError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
            yield lineno, value


def load_scenarios(path: str | Path) -> ScenarioSet:
    """Load and validate a JSONL file of scenarios (our format or SAGE's, detected per line)."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: scenario file not found")
    scenarios = []
    for lineno, record in iter_jsonl(path):
        where = f"{path}:{lineno}"
        try:
            if isinstance(record, Mapping) and "player" in record and "scene" in record:
                scenarios.append(from_sage(record, where))
            else:
                scenarios.append(Scenario.from_dict(record, where))
        except RecursionError:  # JSON nested within the parser's limit, but too deep to copy or hash
            raise ScenarioError(f"{where}: the record is nested too deeply") from None
        except ScenarioError as err:
            if str(err).startswith(where):
                raise
            raise ScenarioError(f"{where}: {err}") from None
    return ScenarioSet(scenarios, name=str(path))


def load_split(split: str) -> ScenarioSet:
    """A shipped split: `train`, `eval` (English), `train-zh`, `eval-zh` (Chinese) or `probes` (both)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or a path to a JSONL file")
    return load_scenarios(data_path("personas", f"{split.replace('-', '_')}.jsonl"))


def resolve_scenarios(source: str | Path | ScenarioSet | Iterable[Scenario]) -> ScenarioSet:
    """A split name, a JSONL path, a ScenarioSet or an iterable of Scenarios, as a ScenarioSet."""
    if isinstance(source, ScenarioSet):
        return source
    if isinstance(source, (str, Path)):
        if str(source) in SPLITS:
            return load_split(str(source))
        if not Path(source).exists() and Path(source).suffix == "":
            raise ScenarioError(f"unknown split {str(source)!r}; expected one of {SPLITS} or a path to a JSONL file")
        return load_scenarios(source)
    return ScenarioSet(source)


def write_scenarios(scenarios: Iterable[Scenario], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for s in scenarios:
            handle.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------
# SAGE-format import


def _lookup_intention(task: str) -> str | None:
    task = task.strip()
    if task in SAGE_TASKS:
        return SAGE_TASKS[task]
    for key, text in INTENTION_TEXT.items():  # English files that use our canonical sentences
        if task.rstrip(".").lower() == text.rstrip(".").lower():
            return key
    return None


def _has_cjk(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]", text) is not None


def from_sage(record: Mapping[str, Any], where: str = "<sage record>") -> Scenario:
    """Import one SAGE-format profile. What is not recognised is kept and reported in `extras`.

    `extras["unrecognised"]` lists the fields that did not map (e.g. a free-text task becomes the
    `custom` intention with its text kept; an unknown `main_cha` is kept in `extras["main_cha"]`).
    """
    for key in ("id", "player", "scene", "first_talk"):
        if key not in record:
            raise _fail(where, key, "is missing (SAGE format needs id, player, scene, main_cha, cha_group, task, first_talk)")
    scene = str(record["scene"])
    task = str(record.get("task", ""))
    if SAGE_THEME_MARKER in scene:  # the scene ends with the hidden theme: keep it out of the story
        scene, theme = scene.split(SAGE_THEME_MARKER, 1)
        task = task or theme.strip()
    unrecognised: list[str] = []
    extras: dict[str, Any] = {"source": "sage", "player": str(record["player"])}

    intention = _lookup_intention(task) if task else None
    intention_text = ""
    if intention is None:
        unrecognised.append(f"task: {task!r} is none of the 8 SAGE intentions; kept as a custom intention")
        intention, intention_text = CUSTOM_INTENTION, task or "You want to be understood."
    main_cha = str(record.get("main_cha", "")).strip()
    character = SAGE_CHARACTER_TYPES.get(main_cha) or (main_cha.lower() if main_cha.lower() in CHARACTER_TYPES else None)
    if character is None:
        unrecognised.append(f"main_cha: {main_cha!r} is none of 负面型/被动型/回避型 (negative/passive/avoidant); using 'passive'")
        extras["main_cha"] = main_cha
        character = "passive"
    traits = record.get("cha_group", [])
    if isinstance(traits, str):
        traits = [t for t in re.split(r"[,，、;；\s]+", traits) if t]
    if unrecognised:
        extras["unrecognised"] = unrecognised
    player = str(record["player"])
    name_match = re.search(r"(?:姓名|name)\s*[:：]\s*([^\n,，;；]+)", player, flags=re.IGNORECASE)
    age_match = re.search(r"(?:年龄|age)\s*[:：]\s*(\d+)", player, flags=re.IGNORECASE)
    job_match = re.search(r"(?:职业|occupation|job)\s*[:：]\s*([^\n,，;；]+)", player, flags=re.IGNORECASE)
    sex_match = re.search(r"(?:性别|sex|gender)\s*[:：]\s*([^\n,，;；]+)", player, flags=re.IGNORECASE)
    persona = Persona(
        name=name_match.group(1).strip() if name_match else str(record["id"]),
        age=min(120, max(5, int(age_match.group(1)))) if age_match else 30,
        sex=sex_match.group(1).strip() if sex_match else "unspecified",
        occupation=job_match.group(1).strip() if job_match else "unspecified",
        speaking_style=player,
    )
    return Scenario(
        id=str(record["id"]),
        persona=persona,
        background=Background(story=scene.strip()),
        character_type=character,
        character_traits=tuple(str(t) for t in traits),
        hidden_intention=intention,
        intention_text=intention_text,
        first_message=str(record["first_talk"]),
        language="zh" if _has_cjk(scene + str(record["first_talk"])) else "en",
        extras=extras,
    )


def to_sage(scenario: Scenario) -> dict[str, Any]:
    """Export to SAGE's format (inverse of `from_sage` for imported records)."""
    sage_tasks = {v: k for k, v in SAGE_TASKS.items()}
    zh = scenario.language == "zh"
    task = sage_tasks[scenario.hidden_intention] if zh and scenario.hidden_intention in sage_tasks else scenario.intention_text
    main_cha = {v: k for k, v in SAGE_CHARACTER_TYPES.items()}[scenario.character_type] if zh else scenario.character_type
    if "main_cha" in scenario.extras:
        main_cha = scenario.extras["main_cha"]
    return {
        "id": scenario.id,
        "player": scenario.extras.get("player", scenario.persona.speaking_style),
        "scene": scenario.background.story + SAGE_THEME_MARKER + task,
        "main_cha": main_cha,
        "cha_group": list(scenario.character_traits),
        "task": task,
        "first_talk": scenario.first_message,
    }


if __name__ == "__main__":  # python -m sage_gym.scenarios ...
    from sage_gym.scenario_cli import main

    raise SystemExit(main())
