"""Scenarios: the simulated users of SageDialogue (persona, background, character, hidden intention).

A scenario is an immutable record loaded and validated in one place. Files are JSONL, one
scenario per line, in the nested format of `Scenario.to_dict()`; `personas/train.jsonl`,
`personas/eval.jsonl` and the Chinese `train_zh.jsonl`, `eval_zh.jsonl` are the named splits
(`train`, `eval`, `train-zh`, `eval-zh`) that ship with the package. SAGE-format profiles
(`id, player, scene, main_cha, cha_group, task, first_talk`) are imported by `from_sage`.

    >>> from sage_gym.scenarios import HIDDEN_INTENTIONS, load_split
    >>> scenarios = load_split("eval")
    >>> scenarios.sample(seed=0).hidden_intention in HIDDEN_INTENTIONS
    True

The package, one job a module:

    records.py      the record: intentions, character types, Scenario and its validation
    sets.py         ScenarioSet, JSONL files and the shipped splits
    sage_format.py  SAGE's profile format, in and out
    checks.py       library checks: completeness, lengths, balance, duplicates, leaks
    generator.py    grow the library with an OpenAI-compatible model
    cli.py          python -m sage_gym.scenarios {validate,import-sage,generate}
"""

from sage_gym.scenarios.records import (
    CHARACTER_TYPES,
    CUSTOM_INTENTION,
    EMOTIONAL_INTENTIONS,
    HIDDEN_INTENTIONS,
    INTENTION_TEXT,
    MAX_NESTING,
    RATIONAL_INTENTIONS,
    SAGE_CHARACTER_TYPES,
    SAGE_TASKS,
    SAGE_THEME_MARKER,
    SPEAKER_STYLES,
    SPLITS,
    Background,
    Persona,
    Scenario,
    ScenarioError,
)
from sage_gym.scenarios.sage_format import _has_cjk, from_sage, to_sage
from sage_gym.scenarios.sets import ScenarioSet, iter_jsonl, load_scenarios, load_split, resolve_scenarios, write_scenarios

__all__ = [
    "CHARACTER_TYPES",
    "CUSTOM_INTENTION",
    "EMOTIONAL_INTENTIONS",
    "HIDDEN_INTENTIONS",
    "INTENTION_TEXT",
    "MAX_NESTING",
    "RATIONAL_INTENTIONS",
    "SAGE_CHARACTER_TYPES",
    "SAGE_TASKS",
    "SAGE_THEME_MARKER",
    "SPEAKER_STYLES",
    "SPLITS",
    "Background",
    "Persona",
    "Scenario",
    "ScenarioError",
    "ScenarioSet",
    "_has_cjk",
    "from_sage",
    "iter_jsonl",
    "load_scenarios",
    "load_split",
    "resolve_scenarios",
    "to_sage",
    "write_scenarios",
]
