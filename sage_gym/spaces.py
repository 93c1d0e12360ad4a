"""A Gymnasium text space that accepts any Unicode text up to a length."""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

# What `sample()` draws from: printable ASCII plus a few non-ASCII letters, so random probes
# exercise Unicode too. `contains()` accepts any character.
SAMPLE_CHARSET = string.ascii_letters + string.digits + " .,!?'-" + "éüñçøßжπ中文😊"


class UnicodeText(spaces.Text):
    """Any `str` of `min_length` to `max_length` characters (Gymnasium's `Text` checks a charset)."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object, /) -> bool:
        return isinstance(other, UnicodeText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)
