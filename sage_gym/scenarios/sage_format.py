"""SAGE's scenario format: import a SAGE profile (`id, player, scene, main_cha, cha_group, task,
first_talk`) as a Scenario, and export one back (docs/scenarios.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sage_gym.scenarios.records import (
    CHARACTER_TYPES,
    CUSTOM_INTENTION,
    INTENTION_TEXT,
    SAGE_CHARACTER_TYPES,
    SAGE_TASKS,
    SAGE_THEME_MARKER,
    Background,
    Persona,
    Scenario,
    _fail,
)


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
