"""One background event loop per process, so synchronous `step()` can drive async simulators.

Every environment (and the vectorized one) runs its coroutines on this loop: network clients
created by simulators stay bound to one loop for the life of the process, and `step()` works
the same from a script, a test or a notebook whose own loop is already running.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid: int | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's background loop, started on first use (and again in a forked child)."""
    global _loop, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid() or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _owner_pid = os.getpid()
            thread = threading.Thread(target=_loop.run_forever, name="sage-gym-loop", daemon=True)
            thread.start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the background loop and wait for its result (exceptions propagate)."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync called from inside sage_gym's own event loop; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
