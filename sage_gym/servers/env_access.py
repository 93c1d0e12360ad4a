"""Who may use the environment server (`sage_gym.servers.env_server`): the checks that run before any route, HTTP and WebSocket alike.

A server may be started in ways it cannot see (`uvicorn app --host 0.0.0.0`, a container), and a
web page the user visits can reach a server on 127.0.0.1. So every request is checked for:

- the address it came in on (ASGI `scope["server"]`): without a token, only a loopback address
  is served, whatever address the server was bound to;
- its Host header, without a token: a loopback name or one the operator allowed, so that a
  page whose domain was re-pointed at 127.0.0.1 (DNS rebinding) is refused;
- its Origin header: programs send none; a browser page must come from an allowed origin;
- the content type of a POST: `application/json`, which a cross-site form or `no-cors` fetch
  cannot send without the browser asking the server first.

With a token the first two checks are off: the token admits a client, whichever name it used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = {"localhost"}


def is_loopback_address(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (`::ffff:127.0.0.1`, a dual-stack socket's view)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_name(authority: str) -> str:
    """The host of a Host header or allow-list entry, lowercase, without port or IPv6 brackets."""
    return (urlsplit(f"//{authority.strip()}").hostname or "").lower()


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class AccessGuard:
    """ASGI middleware refusing, before any route runs, what `app` should not serve (see the module)."""

    def __init__(self, app: ASGIApp, *, has_token: bool, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.has_token = has_token
        self.allowed_hosts = {host_name(host) for host in allowed_hosts} - {""}
        self.allowed_origins = {normalize_origin(origin) for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                status, detail = refusal
                await self.refuse(scope, receive, send, status, detail)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(HTTP status, reason) when the request must be refused, else None."""
        headers = Headers(scope=scope)
        server = scope.get("server")
        # a Unix socket (no address, or no port) cannot be reached over a network
        if not self.has_token and server is not None and server[1] is not None and not is_loopback_address(str(server[0])):
            return 403, f"this server has no token, so it serves only connections to a loopback address, and this one came in on {server[0]}; set a token (--token or SAGE_GYM_SERVE_TOKEN) to serve it"
        host = headers.get("host")
        if not self.has_token and host is not None and not self.host_allowed(host):
            return 403, f"Host {host!r} is not a loopback name nor an allowed host (a DNS-rebinding page looks like this); allow it with --allowed-hosts or SAGE_GYM_SERVE_ALLOWED_HOSTS"
        origin = headers.get("origin")
        if origin is not None and normalize_origin(origin) not in self.allowed_origins:
            return 403, f"a web page from origin {origin!r} may not use this server; allow it with --allowed-origins or SAGE_GYM_SERVE_ALLOWED_ORIGINS"
        if scope["type"] == "http" and scope["method"] == "POST":
            media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media_type != "application/json":
                return 415, f"a POST body must be JSON sent as Content-Type: application/json, got {media_type or 'no content type'}"
        return None

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        return name in LOOPBACK_NAMES or is_loopback_address(name) or name in self.allowed_hosts

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        response = JSONResponse({"detail": detail}, status_code=status)
        if scope["type"] == "http" or "websocket.http.response" in scope.get("extensions", {}):
            await response(scope, receive, send)  # a WebSocket handshake answered with this HTTP status
        else:  # a server without the denial-response extension: refuse the handshake with a policy close
            await send({"type": "websocket.close", "code": 1008, "reason": detail.encode()[:120].decode(errors="ignore")})  # a close reason fits in 123 bytes
