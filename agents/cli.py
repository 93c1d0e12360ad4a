"""The `__main__` guard every command shares: a user's mistake ends in one line on stderr, not a traceback.

A missing file, a bad option value, an unreachable endpoint or a missing optional package is
reported as `prog: error: <first line of the message>` with exit status 2. Set SAGE_GYM_TRACEBACK=1
to see the whole traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError)


def run_main(main: Callable[[], Any], prog: str) -> int:
    """Call `main()`; returns the exit status (its own when it returns an int, else 0)."""
    try:
        result = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("SAGE_GYM_TRACEBACK"):
            raise
        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"{prog}: error: {lines[0]}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
