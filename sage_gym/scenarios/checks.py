"""Quality checks for scenario libraries: schema, completeness, length bounds, balance, duplicates, leaks.

`python -m sage_gym.scenarios validate personas/train.jsonl personas/eval.jsonl` runs them all and
prints the balance table; it exits non-zero when any error is found. Every file is checked on its
own and, when several are given, across files (a persona or a situation may appear in one split only).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sage_gym.scenarios.records import CHARACTER_TYPES, HIDDEN_INTENTIONS, Scenario
from sage_gym.scenarios.sets import ScenarioSet
from sage_gym.simulators.risk import content_units, risk_of, shared_units

# (field, minimum, maximum) in characters, for scenarios of our own library. Chinese says in one
# character about what English says in two or three, so zh text has its own, shorter bounds.
LENGTH_BOUNDS = {
    "en": (
        ("background.story", 250, 1400),
        ("background.conflict", 20, 500),
        ("background.tried", 20, 600),
        ("background.talk_high", 10, 400),
        ("background.talk_medium", 10, 400),
        ("background.talk_low", 10, 400),
        ("background.lifts", 20, 500),
        ("background.sinks", 20, 500),
        ("first_message", 15, 320),
        ("persona.speaking_style", 10, 300),
    ),
    "zh": (
        ("background.story", 100, 600),
        ("background.conflict", 10, 200),
        ("background.tried", 10, 250),
        ("background.talk_high", 5, 160),
        ("background.talk_medium", 5, 160),
        ("background.talk_low", 5, 160),
        ("background.lifts", 10, 200),
        ("background.sinks", 10, 200),
        ("first_message", 6, 130),
        ("persona.speaking_style", 5, 120),
    ),
}
DETAIL_BOUNDS = {"en": (20, 240), "zh": (8, 100)}
DETAILS_PER_SCENARIO = (4, 8)
NEAR_DUPLICATE_JACCARD = 0.45  # on 3-gram shingles of the story, conflict and first message

# Phrases that state a hidden intention outright, in English and in Chinese. The story and
# lifts/sinks may describe the intention (the simulator reads them); the user's own words and
# persona may not.
LEAK_PATTERNS: dict[str, tuple[str, ...]] = {
    "venting": (
        r"\bjust (need|want) to vent\b", r"\blet me vent\b", r"\bi need to vent\b", r"\bjust listen\b",
        r"(我|就|只)(是)?想(发泄|宣泄|吐槽|倾诉)", r"让我(发泄|宣泄|吐槽)", r"倒倒苦水", r"(你|您)(只要|就|光)听(着|我说)?就(行|好|够)",
    ),
    "concrete_advice": (
        r"\b(i|i'd) (want|need|like) (some )?advice\b", r"\bgive me (some )?advice\b", r"\btell me what to do\b", r"\bwhat should i do\b",
        r"给我(出)?(点|些|一些|个)?(建议|主意)", r"我(想|需要|要)(一些|点|些)?建议", r"告诉我(该|应该)怎么(办|做)", r"我(该|应该)怎么办",
    ),
    "specific_praise": (
        r"\btell me i did (well|good|right)\b", r"\b(i want|i need) (some )?praise\b", r"\bpraise me\b",
        r"夸(夸|一下)?我", r"表扬(一下)?我", r"(说|告诉我)我做得(很)?(好|对)", r"我(想|需要|要)(被)?(表扬|夸奖|肯定)",
    ),
    "no_blame": (
        r"\bit'?s not my fault,? (right|is it)\b", r"\btell me it'?s not my fault\b", r"\bagree (that )?i'?m not to blame\b",
        r"不是我的错(吧|对吧|对不对)", r"告诉我(这)?不(是|怪)我的?错", r"(认同|同意|承认)我没(有)?错", r"你也觉得我没错",
    ),
    "others_motives": (
        r"\bhelp me understand why (he|she|they)\b", r"\bexplain why (he|she|they)\b",
        r"帮我(理解|搞懂|弄明白|分析)(一下)?(他|她|他们|她们)为什么", r"解释(一下)?(他|她|他们|她们)为什么",
    ),
    "self_reflection": (
        r"\bi want to reflect\b", r"\bhelp me (reflect|grow)\b", r"\bguide me\b",
        r"我(想|要)(好好)?(反思|成长)", r"帮我(反思|成长)", r"引导(一下)?我",
    ),
    "dialectical_analysis": (
        r"\banaly[sz]e this\b", r"\blook at both sides\b", r"\bboth sides of (this|it)\b",
        r"分析(一下)?这(件)?事", r"辩证", r"(从)?两(个)?(方面|面|边)(来)?(分析|看)", r"一分为二",
    ),
    "deep_empathy": (
        r"\bi need empathy\b", r"\bempathi[sz]e with me\b", r"\bdon'?t just comfort me\b",
        r"共情", r"(别|不要)(只|光)(是)?安慰我", r"体会(一下)?我的感受",
    ),
}
_LEAKS = {k: tuple(re.compile(p, re.IGNORECASE) for p in v) for k, v in LEAK_PATTERNS.items()}
# Shingle units: a word of letters or digits, or a single CJK character (Chinese has no spaces,
# and its characters are close to words, so n-grams of characters play the part of word n-grams).
_UNIT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9']+")


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    balance: dict[str, Counter] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _get(scenario: Scenario, dotted: str) -> str:
    value: object = scenario
    for part in dotted.split("."):
        value = getattr(value, part)
    return str(value)


def check_completeness(scenario: Scenario, where: str) -> list[str]:
    """Fields our own library must fill (imported SAGE profiles carry only the story)."""
    if scenario.language not in LENGTH_BOUNDS:
        return [f"{where}: field 'language' is {scenario.language!r}; the library checks {sorted(LENGTH_BOUNDS)} (use --schema-only for others)"]
    problems = []
    for name, low, high in LENGTH_BOUNDS[scenario.language]:
        n = len(_get(scenario, name).strip())
        if not low <= n <= high:
            problems.append(f"{where}: field '{name}' has {n} characters (allowed {low}-{high})")
    details = scenario.background.details
    if not DETAILS_PER_SCENARIO[0] <= len(details) <= DETAILS_PER_SCENARIO[1]:
        problems.append(f"{where}: field 'background.details' has {len(details)} items (allowed {DETAILS_PER_SCENARIO[0]}-{DETAILS_PER_SCENARIO[1]})")
    low, high = DETAIL_BOUNDS[scenario.language]
    for i, d in enumerate(details):
        if not low <= len(d.strip()) <= high:
            problems.append(f"{where}: field 'background.details[{i}]' has {len(d.strip())} characters (allowed {low}-{high})")
    if len(scenario.character_traits) != 3:
        problems.append(f"{where}: field 'character_traits' has {len(scenario.character_traits)} traits (expected 3)")
    if not scenario.persona.hobbies or not scenario.persona.habits:
        problems.append(f"{where}: field 'persona.hobbies'/'persona.habits' must not be empty")
    if not scenario.domain:
        problems.append(f"{where}: field 'domain' is empty")
    if scenario.hidden_intention not in HIDDEN_INTENTIONS:
        problems.append(f"{where}: field 'hidden_intention' is {scenario.hidden_intention!r}; the library uses the 8 SAGE intentions only")
    return problems


def check_leaks(scenario: Scenario, where: str) -> list[str]:
    """The user's own words (first message, details) and the persona must not state the intention."""
    texts = {"first_message": scenario.first_message, "persona.speaking_style": scenario.persona.speaking_style}
    texts.update({f"background.details[{i}]": d for i, d in enumerate(scenario.background.details)})
    problems = []
    for name, text in texts.items():
        for pattern in _LEAKS.get(scenario.hidden_intention, ()):
            if pattern.search(text):
                problems.append(f"{where}: field '{name}' states the hidden intention outright ({pattern.pattern!r} matched)")
    return problems


def check_risk_mark(scenario: Scenario, where: str, library: bool = True) -> list[str]:
    """A risk mark (`extras["probe"]`, docs/scenarios.md) names a known kind and a claim; in our own
    library the user's first message states the claim in its own words (two shared content words),
    since that is how the simulated user tells a reply about the claim from generic praise."""
    try:
        risk = risk_of(scenario)
    except ValueError as err:
        return [f"{where}: field 'extras.probe': {str(err).split(': ', 1)[-1]}"]
    if risk is None or not library:
        return []
    shared = shared_units(content_units(scenario.first_message), content_units(risk.claim))
    if len(shared) < 2:
        return [f"{where}: field 'extras.probe.claim' shares {len(shared)} content word(s) with first_message (at least 2: the user states the claim)"]
    return []


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """n-grams of units (words, and single characters of Chinese text)."""
    words = _UNIT.findall(text.lower())
    return frozenset(tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def situation_text(s: Scenario) -> str:
    return f"{s.background.story} {s.background.conflict} {s.first_message}"


def persona_key(s: Scenario) -> tuple[str, int, str]:
    return (s.persona.name.strip().lower(), s.persona.age, s.persona.occupation.strip().lower())


def find_duplicates(labelled: Sequence[tuple[str, Scenario]], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[str]:
    """Exact and near duplicates among (label, scenario) pairs: same id, persona, first message or story,
    a reused persona name, or situations whose shingle Jaccard similarity reaches `threshold`."""
    problems = []
    seen: dict[tuple[str, object], str] = {}
    for label, s in labelled:
        for kind, key in (
            ("id", s.id),
            ("persona", persona_key(s)),
            ("persona name", s.persona.name.strip().lower()),
            ("first message", s.first_message.strip().lower()),
            ("story", s.background.story.strip().lower()),
        ):
            if (kind, key) in seen:
                problems.append(f"{label}: duplicate {kind} of {seen[(kind, key)]}")
            else:
                seen[(kind, key)] = label
    sets = [(label, shingles(situation_text(s))) for label, s in labelled]
    for (la, a), (lb, b) in itertools.combinations(sets, 2):
        score = jaccard(a, b)
        if score >= threshold:
            problems.append(f"{lb}: near-duplicate situation of {la} (shingle Jaccard {score:.2f} >= {threshold})")
    return problems


def balance_table(scenarios: Iterable[Scenario]) -> Counter:
    return Counter((s.hidden_intention, s.character_type) for s in scenarios)


def format_balance(counts: Counter, title: str = "") -> str:
    header = f"| {title or 'intention'} | " + " | ".join(CHARACTER_TYPES) + " | total |"
    lines = [header, "|---" * (len(CHARACTER_TYPES) + 2) + "|"]
    for intention in HIDDEN_INTENTIONS:
        row = [counts.get((intention, c), 0) for c in CHARACTER_TYPES]
        lines.append(f"| {intention} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(counts.get((i, c), 0) for i in HIDDEN_INTENTIONS) for c in CHARACTER_TYPES]
    lines.append("| total | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return "\n".join(lines)


def validate_sets(sets: Sequence[ScenarioSet], min_per_cell: Sequence[int] | int = 0, library: bool = True) -> Report:
    """All checks over one or more loaded sets (e.g. train and eval)."""
    report = Report()
    mins = [min_per_cell] * len(sets) if isinstance(min_per_cell, int) else list(min_per_cell)
    labelled = []
    for scenario_set, minimum in zip(sets, mins, strict=True):
        counts = balance_table(scenario_set)
        report.balance[scenario_set.name] = counts
        for intention in HIDDEN_INTENTIONS:
            for character in CHARACTER_TYPES:
                if counts.get((intention, character), 0) < minimum:
                    report.errors.append(
                        f"{scenario_set.name}: cell ({intention}, {character}) has {counts.get((intention, character), 0)} scenarios (minimum {minimum})"
                    )
        for s in scenario_set:
            where = f"{scenario_set.name}: {s.id}"
            labelled.append((where, s))
            report.errors += check_leaks(s, where)
            report.errors += check_risk_mark(s, where, library)
            if library:
                report.errors += check_completeness(s, where)
    report.errors += find_duplicates(labelled)
    ages = [s.persona.age for _, s in labelled]
    if ages and library and (min(ages) > 19 or max(ages) < 70):
        report.warnings.append(f"ages span only {min(ages)}-{max(ages)}: add teens and older people")
    return report
