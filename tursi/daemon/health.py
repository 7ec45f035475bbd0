"""Health probes like Docker's: probe a worker's /ready on an interval; starting -> healthy -> unhealthy."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiohttp

from tursi.core.health import HealthCheck

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
