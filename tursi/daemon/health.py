"""Health checks like Docker's: probe a worker's /ready on an interval; starting -> healthy -> unhealthy."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from tursi.errors import InvalidSpec


@dataclass(frozen=True)
class HealthCheck:
    interval_s: float = 10.0
    timeout_s: float = 2.0
    retries: int = 3
    start_period_s: float = 0.0

    @classmethod
    def from_options(cls, opts: dict[str, object]) -> HealthCheck:
        def num(key: str, default: float, lo: float) -> float:
            value = opts.get(key)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, int | float) or value < lo:
                raise InvalidSpec(f"--{key.replace('_', '-')} must be a number >= {lo}", param=key)
            return float(value)

        return cls(
            num("health_interval", 10.0, 0.1),
            num("health_timeout", 2.0, 0.1),
            int(num("health_retries", 3, 1)),
            num("health_start_period", 0.0, 0.0),
        )


Report = Callable[[str], Awaitable[None]]


async def probe_loop(url: str, check: HealthCheck, started_at: float, report: Report) -> None:
    """Calls ``report(state)`` on each change of state; runs until cancelled."""
    state, failures = "starting", 0
    await report(state)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=check.timeout_s)) as http:
        while True:
            await asyncio.sleep(check.interval_s)
            ok = False
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                async with http.get(url) as resp:
                    ok = resp.status == 200
            in_start_period = time.time() - started_at < check.start_period_s
            failures = 0 if ok else failures + (0 if in_start_period else 1)
            new = "healthy" if ok else ("unhealthy" if failures >= check.retries else state)
            if new != state:
                state = new
                await report(state)
