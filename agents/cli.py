"""The `__main__` guard every command shares: a failure ends in one line on stderr, not a traceback.

Exit status (the same for every command):

| status | meaning |
|---|---|
| 0 | done |
| 1 | the work failed: a simulator or endpoint that stays down, out of memory, an error inside torch or a library (and, for `agents.evaluate`, dialogues left in an error) |
| 2 | a usage error: a bad option value, a missing file or model path, an unknown scenario id, a folder that already holds a run, a missing optional package |
| 130 | interrupted (Ctrl-C) |

Both kinds of failure print `prog: error: <first line of the message>`. Set SAGE_GYM_TRACEBACK=1
to see the whole traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A mistake in what the user asked for: the command exits with status 2.

    A `ValueError`, so code that catches bad values catches it too."""


class MissingPathError(UsageError, FileNotFoundError):
    """A file, folder or model path the user named does not exist."""


class MissingExtraError(UsageError, ImportError):
    """An optional package this command needs is not installed (the message names the extra)."""


USAGE_ERRORS = (UsageError, FileNotFoundError)  # a path the user named that is not there is theirs to fix


def run_main(main: Callable[[], Any], prog: str) -> int:
    """Call `main()`; returns the exit status (its own when it returns an int, else 0)."""
    try:
        result = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001  (every failure becomes one line; SAGE_GYM_TRACEBACK=1 shows where)
        if os.environ.get("SAGE_GYM_TRACEBACK"):
            raise
        print(f"{prog}: error: {first_line(error)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, USAGE_ERRORS) else EXIT_FAILED
    return result if isinstance(result, int) else 0


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a KeyError's message without its quotes), or its type's name."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__
