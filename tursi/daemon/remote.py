"""Remote control over TCP: a bearer token (stored as a sha256, compared in constant time) and a throttle
for addresses that keep failing. Requests over the 0600 Unix socket need no token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from tursi.core.errors import RateLimited, Unauthorized

TOKEN_FILE = "control-token.sha256"
MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0


def ensure_token(home: Path, rotate: bool = False) -> str | None:
    """Create (or rotate) the control token; returns it when new (to show once), else None."""
    path = home / TOKEN_FILE
    if path.exists() and not rotate:
        return None
    token = "tct_" + secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(hashlib.sha256(token.encode()).hexdigest() + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


class TokenGuard:
    def __init__(self, home: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = home / TOKEN_FILE
        self.clock = clock
        self.failures: dict[str, list[float]] = {}

    def _ok(self, presented: str) -> bool:
        try:
            stored = self.path.read_text(encoding="utf-8").strip()  # re-read: rotation takes effect at once
        except OSError:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), stored)

    def check(self, address: str, authorization: str) -> None:
        now = self.clock()
        recent = [t for t in self.failures.get(address, []) if now - t < FAILURE_WINDOW_S]
        if len(recent) >= MAX_FAILURES:
            raise RateLimited(
                f"too many failed logins from {address}; wait a minute",
                _headers={"Retry-After": str(int(FAILURE_WINDOW_S))},
            )
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        if token and self._ok(token):
            self.failures.pop(address, None)
            return
        self.failures[address] = [*recent, now]
        raise Unauthorized("tursid over TCP needs its token: set TURSI_TOKEN (Authorization: Bearer <token>)")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BrowserGate = tuple[Callable[[web.Request], bool], Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]]


def token_middleware(
    guard: TokenGuard, browser: BrowserGate | None = None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The control token on TCP requests; ``browser``: (which requests are the dashboard's, the check they get
    instead), so a browser logged in with the token (a session cookie) reaches the dashboard over TLS."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and sock.family == socket.AF_UNIX:
            return await handler(request)  # the socket's 0600 mode is the check
        if browser is not None and browser[0](request):  # a browser: its session (logged in with the token)
            return await browser[1](request, handler)
        guard.check(request.remote or "unknown", request.headers.get("Authorization", ""))
        return await handler(request)

    return middleware
