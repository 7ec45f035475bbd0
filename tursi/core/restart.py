"""Restart policies like Docker's (no | on-failure[:N] | always | unless-stopped) and their backoff."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tursi.core.errors import InvalidSpec

_POLICY = re.compile(r"^(no|always|unless-stopped|on-failure)(?::(\d{1,6}))?$")


@dataclass(frozen=True)
class RestartPolicy:
    mode: str = "no"
    max_retries: int | None = None  # on-failure:N

    @classmethod
    def parse(cls, spec: str | None) -> RestartPolicy:
        m = _POLICY.match((spec or "no").strip())
        if not m or (m.group(2) and m.group(1) != "on-failure"):
            raise InvalidSpec(
                f"--restart {spec!r} must be no, on-failure[:N], always or unless-stopped", param="restart"
            )
        return cls(m.group(1), int(m.group(2)) if m.group(2) else None)

    def __str__(self) -> str:
        return self.mode + (f":{self.max_retries}" if self.max_retries is not None else "")

    def should_restart(self, exit_code: int | None, restarts: int) -> bool:
        """After the worker exited on its own (never after a manual down)."""
        if self.mode == "no":
            return False
        if self.mode == "on-failure":
            failed = exit_code != 0  # an unknown code (adopted worker) counts as a failure
            return failed and (self.max_retries is None or restarts < self.max_retries)
        return True

    def restart_on_daemon_start(self, reason: str | None) -> bool:
        """Bring a deployment back when tursid starts again (after a stop or a crash of tursid itself)."""
        if self.mode in ("always", "unless-stopped"):
            return True
        return self.mode == "on-failure" and reason == "worker gone while tursid was down"


@dataclass
class Backoff:
    """100 ms doubling up to a cap; a run longer than ``stable_s`` resets it."""

    base_s: float = 0.1
    cap_s: float = 30.0
    stable_s: float = 10.0
    attempts: int = 0

    def next_delay(self, ran_for_s: float) -> float:
        if ran_for_s >= self.stable_s:
            self.attempts = 0
        delay = min(self.cap_s, self.base_s * (2**self.attempts))
        self.attempts += 1
        return delay
