"""psutil sampler: per-deployment CPU and memory plus request counts, and a system line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Any

import aiohttp
import psutil

from tursi.daemon.state import StateStore
from tursi.daemon.thermals import thermal_line
from tursi.daemon.traffic import Counters, parse_metrics, rates

log = logging.getLogger(__name__)
MAX_METRICS_PAGE = 1 << 20  # bytes of a worker's /metrics page tursid reads (ours are a few KiB)


class Sampler:
    def __init__(self, store: StateStore, interval_s: float = 2.0, history: int = 60) -> None:
        self.store = store
        self.interval_s = interval_s
        self.mem_limit: int | None = (
            None  # tursid's memory budget: each deployment's share is of it, as in docker stats
        )
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self._procs: dict[int, psutil.Process] = {}
        self._counters: dict[str, tuple[float, Counters]] = {}
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http:
            await self._http.close()

    async def wait_next(self, after: float) -> dict[str, Any]:
        while not self.history or self.history[-1]["at"] <= after:
            self._wake.clear()
            await self._wake.wait()
        return self.history[-1]

    async def _loop(self) -> None:
        while True:
            try:
                self.history.append(await self.sample())
                self._wake.set()
            except Exception:
                log.exception("sampler failed")
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> dict[str, Any]:
        rows = []
        total_mem = self.mem_limit or psutil.virtual_memory().total
        live = set()
        for dep in self.store.list_deployments(all=False):
            if not dep.pid:
                continue
            live.add(dep.pid)
            try:
                proc = self._procs.get(dep.pid) or self._procs.setdefault(dep.pid, psutil.Process(dep.pid))
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)
                    rss = proc.memory_info().rss
            except psutil.Error:
                continue
            rows.append(
                {
                    "name": dep.name,
                    "pid": dep.pid,
                    "cpu_percent": round(cpu, 1),
                    "mem_bytes": rss,
                    "mem_limit_bytes": total_mem,
                    "mem_percent": round(100.0 * rss / total_mem, 2),
                    **await self._traffic(dep.name, dep.host, dep.port),
                }
            )
        for pid in set(self._procs) - live:
            del self._procs[pid]
        return {"at": time.time(), "deployments": rows, "system": system_line()}

    async def _traffic(self, name: str, host: str, port: int) -> dict[str, Any]:
        text = await self._metrics_page(host, port)
        try:
            counters = parse_metrics(text) if text is not None else None
        except Exception:  # one worker's odd page must not stop the samples of every deployment
            log.warning("unreadable /metrics page from deployment %s", name, exc_info=True)
            counters = None
        if counters is None:
            return rates(None, Counters(), 0.0) | {"requests": None}
        now = time.monotonic()
        previous = self._counters.get(name)
        self._counters[name] = (now, counters)
        if previous is None:
            return rates(None, counters, 0.0)
        return rates(previous[1], counters, now - previous[0])

    async def _metrics_page(self, host: str, port: int) -> str | None:
        if self._http is None:
            return None
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        try:
            async with self._http.get(f"http://{host}:{port}/metrics") as resp:
                if resp.status != 200:
                    return None
                page = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 16):
                    page += chunk
                    if len(page) > MAX_METRICS_PAGE:
                        break
                if len(page) > MAX_METRICS_PAGE:
                    log.warning("deployment at %s:%d sent a /metrics page over %d bytes", host, port, MAX_METRICS_PAGE)
                    return None
                return bytes(page).decode("utf-8", errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None


def system_line() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu_count": psutil.cpu_count(),
        "cpu_percent": psutil.cpu_percent(None),
        "load": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "mem_used_bytes": vm.total - vm.available,
        "mem_total_bytes": vm.total,
        "mem_percent": vm.percent,
        **thermal_line(),
    }
