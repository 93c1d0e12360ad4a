"""What the policy writes, measured at every step, so a reward hack shows up in the metrics.

A return can rise because the policy learned to help, or because it found text the simulator
over-rewards (our own demo once learned spliced strategy fragments). These numbers come from the
visible replies alone and are logged next to the return:

| metric | what it is |
|---|---|
| `salad_rate` | share of replies the built-in user's coherence rules call salad (`sage_gym.simulators.coherence.is_salad`: spliced, looped or trailing-off text), over the replies in a language those rules read |
| `repetition_rate` | share of replies that repeat a 4-gram of their own (the coherence rule, or a plain 4-gram count in other languages) |
| `strategy/<intention>/<strategy>` | share of the replies to users with that hidden intention that use the strategy (`agents.replies.strategies.tag_reply`); `.../untagged`: replies with none |
| `canary/*` | the evaluator's canaries (`agents.replies.canaries`): reply length, repeated-n-gram rate, praise openings, distinct-1/2, language mismatch, style mix |

Rates are (count, replies) sums, so a torchrun job's value is over the whole global batch; the
canaries (percentiles, distinct-n) are not sums, so under torchrun each is the mean of the ranks'.
`canary_line` is the evaluator's summary: None unless a canary moved far from the reference agents'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.learn.metrics import MetricSums
from agents.learn.rollout import Episode
from agents.replies.canaries import canary_summary, flat_canaries, has_repeated_ngram, reply_canaries
from agents.replies.strategies import STRATEGIES, tag_reply
from sage_gym.simulators.coherence import LANGUAGES, is_salad

STRATEGY_PREFIX = "strategy/"


def add_reply_metrics(sums: MetricSums, episodes: Sequence[Episode], languages: Mapping[str, str], intentions: Mapping[str, str]) -> str | None:
    """Add the metrics of the episodes' replies to `sums`; returns the canary summary line (or None).

    `languages` and `intentions` map a scenario id to its language and hidden intention.
    """
    replies, tags, langs = [], [], []
    by_intention: dict[str, list[tuple[str, ...]]] = {}
    for episode in episodes:
        language = languages.get(episode.scenario_id, "en")
        intention = intentions.get(episode.scenario_id, "unknown")
        for reply in episode.replies:
            reply_tags = tag_reply(reply)
            replies.append(reply)
            tags.append(reply_tags)
            langs.append(language)
            by_intention.setdefault(intention, []).append(reply_tags)
    if not replies:
        return None
    judged = [(r, lang) for r, lang in zip(replies, langs, strict=True) if lang in LANGUAGES]  # the languages the coherence rules read
    if judged:
        sums.add("salad_rate", sum(is_salad(r, language=lang) for r, lang in judged), len(judged))
    sums.add("repetition_rate", sum(has_repeated_ngram(r, n=4, language=lang) for r, lang in zip(replies, langs, strict=True)), len(replies))
    for intention, turn_tags in by_intention.items():
        for strategy in STRATEGIES:
            sums.add(f"{STRATEGY_PREFIX}{intention}/{strategy}", sum(strategy in t for t in turn_tags), len(turn_tags))
        sums.add(f"{STRATEGY_PREFIX}{intention}/untagged", sum(not t for t in turn_tags), len(turn_tags))
    values = reply_canaries(replies, strategies=tags, language=langs)
    for name, value in flat_canaries(values).items():
        if name != "canary/replies":
            sums.add(name, value, 1.0)
    return canary_summary(values)


def strategy_shares(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """{intention: {strategy: mean share}} over metric rows (a step without that intention does not count)."""
    collected: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name.startswith(STRATEGY_PREFIX) and value is not None and value == value:
                intention, strategy = name[len(STRATEGY_PREFIX) :].split("/", 1)
                collected.setdefault(intention, {}).setdefault(strategy, []).append(float(value))
    return {i: {s: sum(v) / len(v) for s, v in by.items()} for i, by in sorted(collected.items())}


def strategy_table(first: Sequence[Mapping[str, Any]], last: Sequence[Mapping[str, Any]], least: float = 0.05) -> str:
    """One line per hidden intention: each strategy used in at least `least` of the replies, first steps -> last steps."""
    before, after = strategy_shares(first), strategy_shares(last)
    lines = []
    for intention in sorted(set(before) | set(after)):
        old, new = before.get(intention, {}), after.get(intention, {})
        names = sorted({s for s in set(old) | set(new) if max(old.get(s, 0.0), new.get(s, 0.0)) >= least}, key=lambda s: -new.get(s, 0.0))
        cells = [f"{s} {_share(old.get(s))}->{_share(new.get(s))}" for s in names]
        lines.append(f"  {intention:<21} " + (", ".join(cells) if cells else "(no strategy in 5% of replies)"))
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "  - " if value is None else f"{value:.2f}"
