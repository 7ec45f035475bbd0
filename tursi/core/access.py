"""What a deployment's access settings mean: the API key spec and the rate-limit spec, parsed and checked.

The HTTP layer enforces them (``tursi.http.apikeys``, ``tursi.http.ratelimit``); the spec layer only reads them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from tursi.core.errors import InvalidSpec

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(second|sec|s|minute|min|m|hour|h)\s*(?:;\s*burst\s*=\s*(\d+)\s*)?$")
_UNITS = {"second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600}
MIN_LENGTH = 16


def new_key() -> str:
    return "tsk_" + secrets.token_urlsafe(24)


def check_key(spec: str) -> str:
    """The key to use for ``--api-key SPEC`` ('auto' makes one)."""
    if spec == "auto":
        return new_key()
    if len(spec) < MIN_LENGTH or any(c.isspace() for c in spec):
        raise InvalidSpec(f"--api-key needs at least {MIN_LENGTH} characters and no spaces, or 'auto'", param="api_key")
    return spec


@dataclass(frozen=True)
class RateSpec:
    limit: int  # requests per window
    window_s: int
    burst: int

    @property
    def rate_per_s(self) -> float:
        return self.limit / self.window_s

    def __str__(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour"}[self.window_s]
        return f"{self.limit}/{unit}" + (f";burst={self.burst}" if self.burst != self.limit else "")


def parse_rate_limit(spec: str) -> RateSpec:
    m = _SPEC.match(spec or "")
    if not m:
        raise InvalidSpec(
            f"--rate-limit {spec!r} is not N/second|minute|hour[;burst=M] (e.g. 100/minute;burst=20)",
            param="rate_limit",
        )
    limit, window = int(m.group(1)), _UNITS[m.group(2)]
    burst = int(m.group(3)) if m.group(3) else limit
    if limit < 1 or burst < 1 or limit > 1_000_000 or burst > 1_000_000:
        raise InvalidSpec("--rate-limit needs 1 to 1000000 requests and a burst of 1 to 1000000", param="rate_limit")
    return RateSpec(limit, window, burst)
