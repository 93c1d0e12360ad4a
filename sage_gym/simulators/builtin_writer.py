"""A deterministic stand-in for an LLM scenario writer, served by the local OpenAI-compatible server.

It answers the scenario generator's prompt (`prompts/scenario_writer.j2`) with a complete, valid
scenario for the requested cell, composed from small banks of names, jobs and story fragments
with the request's seed. It exists so the generator's whole HTTP path (prompt, structured output,
validation, duplicate rejection, resume) is tested offline; the scenarios it writes are plausible
but formulaic, and the shipped library is written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_gym.scenarios import CHARACTER_TYPES, HIDDEN_INTENTIONS

WRITER_REQUEST_LABEL = "Write ONE new scenario for this request (JSON):"

FIRST = (
    "Amara", "Bilal", "Chen", "Dagny", "Efua", "Farid", "Greta", "Hamza", "Ines", "Jomo", "Keiko", "Luca", "Mei", "Nadia",
    "Oskar", "Priya", "Quentin", "Rosa", "Sione", "Tamar", "Umar", "Vera", "Wanjiru", "Xavier", "Yara", "Zoltan", "Aiko",
    "Bongani", "Carmen", "Dev", "Elif", "Fionn", "Gabriela", "Hiro", "Ilse", "Jae", "Kofi", "Leila", "Mateo", "Noor",
)
LAST = (
    "Abebe", "Brandt", "Castillo", "Dlamini", "Eriksen", "Fofana", "Gupta", "Haddad", "Ivanova", "Jensen", "Kaur", "Lindqvist",
    "Mensah", "Nakamura", "Okafor", "Petrov", "Quispe", "Rahman", "Silva", "Tanaka", "Ulloa", "Vasquez", "Weber", "Yilmaz",
    "Zapata", "Moreau", "Novak", "Oyelaran", "Pham", "Rossi",
)
JOBS = (
    "bus mechanic", "school librarian", "delivery rider", "dental nurse", "carpenter", "call-centre agent", "retired postman",
    "pharmacy technician", "sixth-form student", "hotel night porter", "graphic designer", "dairy farmer", "court clerk",
    "primary teacher", "warehouse picker", "church organist", "tram driver", "physiotherapist", "baker", "tax adviser",
)
HOBBIES = ("allotment gardening", "chess", "running", "crosswords", "baking bread", "fishing", "choir", "sketching", "cycling", "birdwatching", "karaoke", "woodwork")
HABITS = ("makes lists for everything", "checks the phone at night", "walks to think", "apologises too often", "hums when nervous", "keeps receipts", "reads the news at dawn")
OTHERS = {
    "work": ("manager", "colleague", "team lead"), "family": ("brother", "sister", "mother"), "partner": ("partner", "husband", "wife"),
    "friendship": ("oldest friend", "flatmate", "best friend"), "school": ("teacher", "tutor", "classmate"), "health": ("doctor", "specialist", "nurse"),
    "money": ("landlord", "bank adviser", "lender"), "housing": ("landlord", "neighbour", "letting agent"),
}
DEFAULT_OTHERS = ("neighbour", "cousin", "coach")
EVENTS = (
    "{other} {other_name} promised in {month} to sort out the {thing}, then quietly went back on it",
    "{other_name}, {pronoun} {other}, shared the story of the {thing} with people {name} barely knows",
    "the {thing} fell through after {other_name} changed the plan without telling anyone",
    "{other_name} blamed {name} in front of everyone for the {thing}, although the decision was never {name}'s",
    "a small disagreement about the {thing} with {other_name} turned into weeks of silence",
    "{name} covered for {other_name} over the {thing} for months until it all came out at once",
)
THINGS = ("holiday money", "shared car", "family business", "wedding plans", "rota", "grant application", "old flat", "exam results", "allotment plot", "birthday party", "loan", "move abroad")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
TRAITS = {
    "negative": ("cynical", "irritable", "quick to take offence", "pessimistic", "sharp-tongued", "resentful", "hard to please"),
    "passive": ("soft-spoken", "self-doubting", "hesitant", "easily tired", "goes along with others", "quiet", "slow to open up"),
    "avoidant": ("deflects with jokes", "changes the subject", "minimises problems", "guarded", "uneasy with closeness", "private", "brushes things off"),
}
LIFTS = {
    "dialectical_analysis": "Replies that weigh the events from more than one side and name what each person got right and wrong.",
    "concrete_advice": "Practical, specific next steps that fit the situation and can be done this week.",
    "others_motives": "Plausible explanations of why the other person acted as they did.",
    "specific_praise": "Sincere recognition of the specific things they did well.",
    "self_reflection": "Gentle questions that help them look at their own part and what they want next time.",
    "venting": "Being let to talk without interruption, and having the unfairness named.",
    "deep_empathy": "Replies that name the layered feeling exactly instead of rushing to comfort.",
    "no_blame": "Clear agreement that they did nothing wrong and that the others were out of line.",
}
SINKS = "Platitudes, lectures, being told to move on, blame, and replies that ignore what they said."


def read_writer_request(messages: Any) -> dict[str, Any] | None:
    """The generator's request JSON if the last message is a scenario-writer prompt, else None."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    lines = str(messages[-1].get("content", "")).splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == WRITER_REQUEST_LABEL:
            request = json.loads(lines[i + 1])
            return request if isinstance(request, dict) else None
    return None


def write_scenario(request: dict[str, Any], seed: int) -> dict[str, Any]:
    """A complete scenario record for the requested cell, determined by the seed.

    Every part is drawn from one generator in a fixed order (the cast, the story, the persona, the
    traits, the first message), so a seed always writes the same scenario."""
    rng = np.random.default_rng(seed)
    pick: Pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    cast = _draw_cast(request, pick, rng)
    story = _story(cast, pick)
    return {
        "id": str(request.get("id") or f"gen-{seed}"),
        "persona": _persona(cast, pick),
        "background": _background(cast, story),
        "character_type": cast.character,
        "character_traits": [str(t) for t in rng.choice(TRAITS[cast.character], size=3, replace=False)],
        "hidden_intention": cast.intention,
        "first_message": _first_message(cast, pick),
        "domain": cast.domain,
        "language": "en",
    }


Pick = Callable[[Sequence[Any]], Any]  # one uniform draw from the options


@dataclass(frozen=True)
class _Cast:
    """Who a written scenario is about and what happened to them."""

    intention: str
    character: str
    domain: str
    name: str
    other_name: str  # the first name of the other person in the events
    other: str  # who they are to the user
    thing: str
    month: str
    weeks: int
    age: int
    event: str
    job: str

    @property
    def first(self) -> str:
        return self.name.split()[0]


def _draw_cast(request: dict[str, Any], pick: Pick, rng: np.random.Generator) -> _Cast:
    intention: str = request["hidden_intention"] if request.get("hidden_intention") in HIDDEN_INTENTIONS else pick(HIDDEN_INTENTIONS)
    character: str = request["character_type"] if request.get("character_type") in CHARACTER_TYPES else pick(CHARACTER_TYPES)
    domain = str(request.get("domain") or "family")
    avoid = set(request.get("avoid_names") or ())
    name = next(n for n in (f"{pick(FIRST)} {pick(LAST)}" for _ in range(1000)) if n not in avoid)
    other_name = f"{pick(FIRST)} {pick(LAST)}".split()[0]
    other = pick(OTHERS.get(domain, DEFAULT_OTHERS))
    pronoun = pick(("her", "his", "their"))
    thing, month, weeks, age = pick(THINGS), pick(MONTHS), int(rng.integers(2, 30)), int(rng.integers(15, 86))
    event = pick(EVENTS).format(other=other, other_name=other_name, name=name.split()[0], pronoun=pronoun, thing=thing, month=month)
    return _Cast(intention, character, domain, name, other_name, other, thing, month, weeks, age, event, pick(JOBS))


def _story(c: _Cast, pick: Pick) -> str:
    openings = (
        f"{c.first} is {c.age} and works as a {c.job}. In {c.month}, {c.event}.",
        f"In {c.month}, {c.event}; {c.first}, a {c.age}-year-old {c.job}, did not see it coming.",
        f"Until {c.month}, {c.first} ({c.age}, {c.job}) thought things with {c.other_name} were fine. Then {c.event}.",
    )
    middles = (
        f"For {c.weeks} weeks since, {c.first} has replayed what {c.other_name} said about the {c.thing}.",
        f"{c.weeks} weeks on, the {c.thing} is the first thing {c.first} thinks of every morning.",
        f"Since then {c.first} has slept badly, going over the {c.thing} for {c.weeks} weeks straight.",
    )
    friends = (
        "Friends have offered opinions, but each talk left things heavier.",
        f"A colleague said to let it go; {c.first} could not.",
        f"{c.first} has told almost nobody, partly out of pride.",
    )
    endings = (
        f"Now the {c.thing} comes up again next week, and facing {c.other_name} feels impossible.",
        f"Next week there is no avoiding {c.other_name} any more, and the {c.thing} will be on the table.",
        f"A message from {c.other_name} arrived yesterday about the {c.thing}, still unanswered.",
    )
    return " ".join((pick(openings), pick(middles), pick(friends), pick(endings)))


def _persona(c: _Cast, pick: Pick) -> dict[str, Any]:
    return {
        "name": c.name, "age": c.age, "sex": pick(("female", "male", "nonbinary")), "occupation": pick(JOBS),
        "hobbies": [pick(HOBBIES), pick(HOBBIES)], "habits": [pick(HABITS)],
        "speaking_style": pick(("short sentences, trails off", "dry and precise", "rambling, lots of asides", "blunt, few words")),
        "speaker": "passive" if c.character == "passive" else pick(("active", "passive")),
    }


def _background(c: _Cast, story: str) -> dict[str, Any]:
    return {
        "story": story,
        "conflict": f"{c.first} feels let down by {c.other_name} over the {c.thing} and cannot settle it.",
        "tried": f"{c.first} wrote {c.other_name} a long message about the {c.thing} and deleted it, then tried to ignore it for {c.weeks} weeks.",
        "talk_high": "Warmer, adds small details, even jokes.",
        "talk_medium": "Careful, tests whether the listener is paying attention.",
        "talk_low": "Short answers, says it doesn't matter.",
        "lifts": LIFTS[c.intention],
        "sinks": SINKS,
        "details": [
            f"It started in {c.month}. The {c.thing}. I still can't quite believe it.",
            f"{c.other_name} is my {c.other}. Or was. I don't know what to call it now.",
            f"It's been {c.weeks} weeks and I keep replaying the same conversation.",
            f"I told a friend about the {c.thing} and she just changed the subject.",
            f"Next week it all comes up again and I'm already dreading seeing {c.other_name}.",
        ],
    }


def _first_message(c: _Cast, pick: Pick) -> str:
    return str(
        pick(
            (
                f"I don't even know how to start. It's about {c.other_name} and the {c.thing}.",
                f"So. {c.weeks} weeks of this {c.thing} business and I'm still stuck on it.",
                f"Can I talk about something? {c.other_name}. The {c.thing}. Ugh.",
                f"Long story, but {c.month} was when it all went wrong with {c.other_name}.",
            )
        )
    )
