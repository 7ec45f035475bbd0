"""The dashboard's one-time login tokens and the sessions they become, kept in tursid's memory (a restart of
tursid logs everyone out). Only digests are kept: a token or cookie read from memory cannot be replayed."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LOGIN_TOKEN_TTL_S = 120.0
SESSION_IDLE_S = 12 * 3600.0


@dataclass
class Session:
    csrf: str
    created: float
    seen: float


@dataclass
class Sessions:
    """One-time login tokens and the sessions they became; in memory (a tursid restart logs everyone out)."""

    clock: Callable[[], float] = time.monotonic
    tokens: dict[str, float] = field(default_factory=dict)  # sha256(token) -> expiry
    sessions: dict[str, Session] = field(default_factory=dict)  # sha256(cookie) -> session

    def new_login_token(self) -> str:
        now = self.clock()
        self.tokens = {k: t for k, t in self.tokens.items() if t > now}
        token = secrets.token_urlsafe(32)
        self.tokens[_digest(token)] = now + LOGIN_TOKEN_TTL_S
        return token

    def redeem(self, token: str) -> tuple[str, Session] | None:
        """A new session (cookie value, session) for a login token not used or expired before; else None."""
        expiry = self.tokens.pop(_digest(token), None)
        if expiry is None or expiry < self.clock():
            return None
        return self.open()

    def open(self) -> tuple[str, Session]:
        """A new session: (cookie value, session)."""
        now = self.clock()
        cookie = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(24), now, now)
        self.sessions[_digest(cookie)] = session
        return cookie, session

    def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        key = _digest(cookie)
        session = self.sessions.get(key)
        now = self.clock()
        if session is None or now - session.seen > SESSION_IDLE_S:
            self.sessions.pop(key, None)
            return None
        session.seen = now
        return session

    def end(self, cookie: str | None) -> None:
        if cookie:
            self.sessions.pop(_digest(cookie), None)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
