"""What the built-in user thinks, feels and says back after a reply, in the scenario's language:
the hidden thoughts and feeling of the analysis, the next message (composed from the scenario's
details, the emotion bucket, the character type and what went wrong or right), and whether the
user leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

from sage_gym.scenarios import Scenario
from sage_gym.simulators.base import Message, Rules
from sage_gym.simulators.builtin import lexicon_en
from sage_gym.simulators.builtin.lexicon import ENGLISH, Lexicon, lexicon_for
from sage_gym.simulators.builtin.scoring import KEY_STRATEGY, ReplyFeatures, turn_rng

# the flags the user thinks about, in this order, then the harmful strategies
THOUGHT_FLAGS = tuple(f for f in lexicon_en.THOUGHT_LINES if f not in ("blame", "dismiss", "platitude"))
REPLY_FLAG_ORDER = ("wrong_language", "repeated", "spliced", "repetitive", "reused", "formulaic", "stacked", "truncated", "ignored", "too_short", "too_long", "pushy")
AVOIDANT_WALKOUT = 20  # an avoidant user this low leaves of their own accord


def _meaning(feats: ReplyFeatures, lexicon: Lexicon | None = None) -> str:
    lexicon = lexicon or ENGLISH
    template, nothing, separator = lexicon.meaning
    used = [lexicon.meaning_names[s] for s in sorted(feats.strategies) if s in lexicon.meaning_names]
    return template.format(separator.join(used)) if used else nothing


def _feeling(change: int, lexicon: Lexicon | None = None) -> str:
    names = (lexicon or ENGLISH).feeling_names
    if change >= 10:
        return names[0]
    if change > 0:
        return names[1]
    if change == 0:
        return names[2]
    if change > -10:
        return names[3]
    return names[4]


def _thoughts(scenario: Scenario, feats: ReplyFeatures, flags: frozenset[str], goal: str, change: int) -> str:
    lexicon = lexicon_for(scenario.language)
    lines = [lexicon.thought_lines[f] for f in THOUGHT_FLAGS if f in flags]
    lines += [lexicon.thought_lines[h] for h in ("blame", "dismiss", "platitude") if h in feats.strategies]
    if scenario.hidden_intention in lexicon.goal_met:
        if goal == "met":
            lines.append(lexicon.goal_lines[0].format(lexicon.goal_met[scenario.hidden_intention]))
        elif goal == "not met":
            lines.append(lexicon.goal_lines[1].format(lexicon.goal_missing[scenario.hidden_intention]))
    if not lines:
        lines.append(lexicon.listening[0] if change > 0 else lexicon.listening[1])
    return lexicon.joiner.join(lines)



def compose_reply(
    scenario: Scenario,
    bucket: str,
    ending: str,
    turn: int,
    seed: int,
    history: Sequence[Message],
    agent_reply: str,
    features: ReplyFeatures,
    change: int = 0,
) -> str:
    """The user's next message. `ending` is "success", "failure", "left" or "" (the dialogue goes on)."""
    lexicon = lexicon_for(scenario.language)
    rng = turn_rng(seed, turn, agent_reply, 2)
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if ending == "success":
        return pick(lexicon.goodbye_success)
    if ending == "failure":
        return pick(lexicon.goodbye_failure)
    if ending == "left":
        return pick(lexicon.goodbye_left)
    parts = []
    flag = next((f for f in REPLY_FLAG_ORDER if f in features.flags), None)
    harm = next((h for h in ("blame", "dismiss", "platitude") if h in features.strategies), None)
    if flag:
        parts.append(pick(lexicon.flag_lines[flag]))
    elif harm:
        parts.append(pick(lexicon.harm_lines[harm]))
    elif change > 0 and bucket != "high":
        parts.append(pick(lexicon.warming[scenario.character_type]))
    else:
        parts.append(pick(lexicon.openers[(bucket, scenario.character_type)]))
    details = scenario.background.details
    # open up with a new detail unless withdrawn: passive and avoidant users only at medium or high
    opens_up = bucket != "low" or (scenario.character_type == "negative" and scenario.persona.speaker == "active")
    if details and opens_up and flag != "wrong_language":  # nothing to answer in what they could not read
        parts.append(details[turn % len(details)])
    key = KEY_STRATEGY.get(scenario.hidden_intention)
    # drop a hint every other turn while the intention is unmet (never stating it outright)
    if key and key not in features.strategies and scenario.hidden_intention in lexicon.hints and (turn % 2 == 1 or not details):
        parts.append(pick(lexicon.hints[scenario.hidden_intention]))
    return lexicon.joiner.join(parts)



def ending_for(rules: Rules, scenario: Scenario, emotion: int) -> str:
    if emotion >= rules.success_at:
        return "success"
    if emotion < rules.failure_below:
        return "failure"
    if scenario.character_type == "avoidant" and emotion < AVOIDANT_WALKOUT:
        return "left"
    return ""
