"""Run a uvicorn server in a background thread, on a socket bound before the thread starts.

Shared by the local simulator server and the environment server. Binding first means `port=0`
yields the port actually taken, and a bind error is raised in the caller's thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

START_TIMEOUT_S = 30.0


@contextmanager
def uvicorn_in_thread(make_config: Callable[[], uvicorn.Config], host: str, port: int, name: str) -> Iterator[str]:
    """Serve `make_config()` on `host:port` in a daemon thread; yields `host:port` as a URL authority."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for such sockets;
    # without it every small answer waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(make_config())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the {name} server did not start on {host}:{port}")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{shown}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
