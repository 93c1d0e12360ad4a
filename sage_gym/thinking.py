"""Think-then-say: split an agent's text into its private thought and its visible reply.

The agent writes `<think>...</think>` and then its reply. Only the reply reaches the simulated
user and the visible history; the thought stays in the agent's own tokens. An unterminated
`<think>` (the agent ran out of tokens while thinking) hides everything after it, so the user
sees an empty reply rather than half a thought.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BLOCK = re.compile(r"<think>(.*?)</think>", flags=re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<think>", flags=re.IGNORECASE)


def split_think(text: str) -> tuple[str, str]:
    """(thought, visible reply). Text without think tags is all visible."""
    thoughts = [m.strip() for m in _BLOCK.findall(text)]
    visible = _BLOCK.sub("", text)
    dangling = _OPEN.search(visible)
    if dangling:  # opened but never closed
        thoughts.append(visible[dangling.end() :].strip())
        visible = visible[: dangling.start()]
    # a stray closing tag without an opening one: everything before it was thinking
    if THINK_CLOSE in visible.lower():
        idx = visible.lower().rindex(THINK_CLOSE)
        thoughts.append(visible[:idx].strip())
        visible = visible[idx + len(THINK_CLOSE) :]
    return "\n".join(t for t in thoughts if t), visible.strip()
