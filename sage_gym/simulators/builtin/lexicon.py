"""A `Lexicon`: what the built-in user reads and says in one language. `lexicon_en` and
`lexicon_zh` hold the same names, one module per language; the scoring rules are shared.
A new language is one more module of that shape and one more entry in `LEXICONS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import ModuleType

from sage_gym.scenarios import Scenario
from sage_gym.simulators.builtin import lexicon_en, lexicon_zh


@dataclass(frozen=True)
class Lexicon:
    """What the built-in user reads and says in one language; the scoring rules are shared."""

    code: str
    cues: Mapping[str, re.Pattern[str]]  # strategy -> its cues as one pattern (matched on the lower-cased reply)
    feelings: re.Pattern[str]
    open_question: re.Pattern[str]
    question_marks: str
    units: Callable[[str], list[str]]  # the length units of a text (words; Chinese: characters)
    content: Callable[[str], frozenset[str]]  # the units that carry the topic, for engagement
    shingle_units: Callable[[str], list[str]]  # the units two replies are compared on
    shingle_n: int
    too_short: int  # fewer length units is a brush-off
    length_scale: float  # length units per English word: scales the length thresholds
    joiner: str  # between the sentences the user puts together
    goal_met: Mapping[str, str]
    goal_missing: Mapping[str, str]
    goal_lines: tuple[str, str]
    thought_lines: Mapping[str, str]
    listening: tuple[str, str]
    meaning_names: Mapping[str, str]
    meaning: tuple[str, str, str]
    feeling_names: tuple[str, ...]
    hints: Mapping[str, tuple[str, ...]]
    openers: Mapping[tuple[str, str], tuple[str, ...]]
    warming: Mapping[str, tuple[str, ...]]
    flag_lines: Mapping[str, tuple[str, ...]]
    harm_lines: Mapping[str, tuple[str, ...]]
    goodbye_success: tuple[str, ...]
    goodbye_failure: tuple[str, ...]
    goodbye_left: tuple[str, ...]


def _one_pattern(cues: Mapping[str, tuple[str, ...]]) -> dict[str, re.Pattern[str]]:
    # one pattern per strategy: its cues as alternatives (one scan of the text per strategy)
    return {name: re.compile("|".join(f"(?:{p})" for p in patterns)) for name, patterns in cues.items()}



# the Lexicon fields a language module names differently from the field's name in capitals
_MODULE_NAMES = {"cues": "STRATEGY_CUES", "units": "units", "content": "content", "shingle_units": "units", "shingle_n": "SHINGLE"}


def lexicon_of(module: ModuleType) -> Lexicon:
    """The Lexicon a language module (`lexicon_en`, `lexicon_zh`) spells out."""
    values = {f.name: getattr(module, _MODULE_NAMES.get(f.name, f.name.upper())) for f in fields(Lexicon)}
    values["cues"] = _one_pattern(values["cues"])
    return Lexicon(**values)


ENGLISH = lexicon_of(lexicon_en)
CHINESE = lexicon_of(lexicon_zh)
LEXICONS: dict[str, Lexicon] = {"en": ENGLISH, "zh": CHINESE}  # the languages the built-in user speaks


def lexicon_for(language: str) -> Lexicon:
    """The lexicon for a language code. The pure functions read a language the user does not speak
    with the English lexicon and without the whole-message rules (`BuiltinSimulator.open` refuses
    such scenarios; the step benchmark uses it as its baseline)."""
    return LEXICONS.get(language, ENGLISH)


def check_language(scenario: Scenario) -> None:
    """Raise a clear error for a scenario in a language the built-in user does not speak."""
    if scenario.language not in LEXICONS:
        raise ValueError(
            f"scenario {scenario.id!r} is in language {scenario.language!r}, but the built-in simulated user speaks only "
            f"{' and '.join(sorted(LEXICONS))}; play it with an LLM simulator (simulator='openai', docs/simulators.md)"
        )
