"""Where a Chinese reply's sentences end or start where frontier models never end or start one.

Text spliced from fragments breaks sentences where a writer would not: *"你一直放不。"* ends a
sentence inside 放不下, *"候你心里在想什？"* starts one inside 时候 and ends one inside 什么. The
calibrated user reads that from SAGE's own data: over the 3.5 million characters of the fitting
judge's frontier replies (the copy in `sage_gym/calibrate/data/`), how often each character ends a
sentence and how often it starts one, against how often it occurs at all. A boundary whose
log-probability falls below `BROKEN_BELOW` is one no frontier model writes.

The rule checks of `coherence.py` read Chinese through a short word list and particle pairs: they
raise `spliced` or `truncated` on 2.4% of SAGE's frontier replies (a line ending on 因为 before a
list, 的过… read as a broken pair, nested brackets) and miss a sentence cut mid-word that ends on
。 or ？. At `BROKEN_BELOW` this check raises on 0.23% of the fitting judge's replies and 0.93% of
the held-out GPT-4o judge's (measured when it was chosen; docs/builtin_simulator.md section 10),
and the calibrated user reads Chinese splices with it instead of the word-list checks.

The counts are built from the vendored dialogues on first use (about 5 seconds) and kept in memory.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

# Every mark that ends a sentence counts as one: what matters is that a sentence ends after this
# character, not which mark ends it (a character that ends sentences with ！ ends them with 。 too).
_END_MARKS = "。！？!?…~～"
_AS_ONE_END = str.maketrans({mark: "。" for mark in _END_MARKS})
_START = "^"  # the start of a reply: a sentence starts there
_HAN = re.compile(r"[\u3400-\u9fff]")
BROKEN_BELOW = -9.0  # natural log; chosen on the fitting judge's replies alone (0.23% of them raise it)
_SMOOTHING = 0.1  # added to a boundary's count, so that an unseen one is rare, not impossible


@dataclass(frozen=True)
class BoundaryCounts:
    """How often each character occurs, ends a sentence and starts one, in frontier replies."""

    chars: Counter[str]
    ends: Counter[str]  # character -> sentences it ends
    starts: Counter[str]  # character -> sentences it starts

    @classmethod
    def of(cls, replies: list[str]) -> BoundaryCounts:
        chars: Counter[str] = Counter()
        ends: Counter[str] = Counter()
        starts: Counter[str] = Counter()
        for reply in replies:
            text = _START + reply.translate(_AS_ONE_END)
            chars.update(text)
            for before, after in itertools.pairwise(text):
                if after == "。":
                    ends[before] += 1
                elif before in "。\n" + _START:
                    starts[after] += 1
        return cls(chars, ends, starts)

    def end_logprob(self, char: str) -> float:
        return math.log((self.ends[char] + _SMOOTHING) / (self.chars[char] + 1))

    def start_logprob(self, char: str) -> float:
        return math.log((self.starts[char] + _SMOOTHING) / (self.chars[char] + 1))


@lru_cache(maxsize=1)
def frontier_counts() -> BoundaryCounts:
    """The counts over the fitting judge's vendored replies (the held-out judge is never read)."""
    from sage_gym.calibrate.data import load_vendored  # the calibrate package reads the simulators: imported late

    return BoundaryCounts.of([turn.reply for dialogue in load_vendored() for turn in dialogue.turns])


def broken_boundary(reply: str, counts: BoundaryCounts | None = None) -> str | None:
    """The first sentence boundary of a Chinese reply that frontier models never write (the two
    characters around it), or None. Only boundaries between a Han character and an end mark count:
    English words, digits and emoji inside a Chinese reply are not judged here."""
    counts = counts or frontier_counts()
    text = reply.translate(_AS_ONE_END)
    for i, char in enumerate(text):
        if char != "。":
            continue
        before = text[i - 1] if i else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if _HAN.match(before) and counts.end_logprob(before) < BROKEN_BELOW:
            return before + reply[i]
        if _HAN.match(after) and counts.start_logprob(after) < BROKEN_BELOW:
            return reply[i] + after
    return None
