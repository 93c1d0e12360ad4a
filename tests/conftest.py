"""Shared fixtures: small scenario sets built in code, and a fast hypothesis profile."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from sage_gym.scenarios import Background, Persona, Scenario, ScenarioSet

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def make_scenario(sid: str = "t-1", intention: str = "venting", character: str = "negative", **overrides) -> Scenario:
    fields = dict(
        id=sid,
        persona=Persona(name="Ada Moreau", age=33, sex="female", occupation="baker", hobbies=("chess",), speaking_style="dry", speaker="active"),
        background=Background(
            story="Ada's bakery lost its lease after the landlord sold the building in March.",
            conflict="She feels discarded.",
            tried="She asked the landlord for a year's extension.",
            details=(
                "The landlord told me by text. Eleven years in that building.",
                "My apprentice cried when I told her.",
                "I already called three other landlords this week.",
            ),
        ),
        character_type=character,
        character_traits=("blunt", "proud", "tired"),
        hidden_intention=intention,
        first_message="So that's it, the bakery's done. Eleven years, gone by text message.",
    )
    fields.update(overrides)
    return Scenario(**fields)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return make_scenario()


@pytest.fixture(scope="session")
def small_set() -> ScenarioSet:
    from sage_gym.scenarios import CHARACTER_TYPES, HIDDEN_INTENTIONS

    return ScenarioSet(
        [make_scenario(f"t-{i}-{c}", intention=i, character=c) for i in HIDDEN_INTENTIONS for c in CHARACTER_TYPES], name="small"
    )
