"""Which deployments are loaded: keep-alive (unload after a while without requests), load on demand, and an idle
deployment's port kept open so that a request to it loads the model instead of being refused.

A deployment is ``idle`` when its worker was stopped for want of requests (or by ``tursi stop``): it keeps its name,
options, artifact and port. While it is idle, tursid listens on that port itself (a *waker*). The first request,
to the port or through the gateway, starts the worker on that same socket, waits for ``/ready`` and passes the
request on: a client sees one slow answer, never a refused connection, and connections that arrive meanwhile wait
in the socket's backlog.

Activity: requests through the gateway and the wakers are counted here; requests straight to a worker's port are
seen in the worker's ``/metrics`` (``tursi_requests_total``, ``tursi_requests_in_flight``), which the sampler reads
every few seconds. Health probes, ``/metrics`` and ``ps`` count for nothing. A deployment with requests in flight is
never unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tursi.core.durations import keep_alive_seconds
from tursi.core.errors import DeploymentNotFound, DeploymentNotRunning, InsufficientMemory
from tursi.daemon.budget import Budget, default_budget
from tursi.daemon.sampler import Sampler
from tursi.daemon.state import Deployment, StateStore
from tursi.daemon.supervisor import Supervisor, bind_listener
from tursi.http.connections import ConnectionLimits, LimitedTCPSite, runner_for

log = logging.getLogger(__name__)
_FREE = asyncio.Lock()  # stands for a deployment nobody has locked yet
IDLE_CHECK_S = 1.0
WAKER_DRAIN_S = 3600.0  # a request a waker passed on may stream for a long time after the worker took over


@dataclass
class Waker:
    listener: socket.socket  # tursid's copy of the deployment's listening socket
    runner: web.AppRunner
    site: web.BaseSite


@dataclass
class LoadRecord:
    count: int = 0
    last_s: float = 0.0
    total_s: float = 0.0


class Residency:
    def __init__(
        self,
        store: StateStore,
        supervisor: Supervisor,
        sampler: Sampler,
        *,
        ready_timeout_s: float,
        budget: Budget | None = None,
        keep_alive: str = "5m",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.sampler = sampler
        self.ready_timeout_s = ready_timeout_s
        self.default_keep_alive = keep_alive  # for deployments that set none
        self.keep_override: dict[str, float | None] = {}  # Ollama's per-request keep_alive, until the next unload
        self.clock = clock
        self.last_used: dict[str, float] = {}
        self.in_flight: Counter[str] = Counter()
        self.loads: dict[str, LoadRecord] = {}
        self.waker_app: Callable[[str], web.Application] | None = None  # set by the gateway module
        # tursid's connection limits, shared by every listener it holds (set by serve); wakers count against them
        self.limits = ConnectionLimits()
        self._seen: dict[str, tuple[float, int]] = {}  # name -> (sample time, worker's request count)
        self._locks: dict[str, asyncio.Lock] = {}
        self._wakers: dict[str, Waker] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.budget = budget if budget is not None else Budget(default_budget())
        self._admission = asyncio.Lock()  # one load at a time: two loads never count the same free memory

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """After reconcile: idle deployments get their wakers back; the idle check starts."""
        for dep in self.store.list_deployments(all=True):
            if dep.status == "idle":
                await self._start_waker(dep)
        self._task = asyncio.get_running_loop().create_task(self._idle_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for name in list(self._wakers):
            sock = await self._stop_waker(name)
            if sock is not None:
                sock.close()
        for task in list(self._retiring):
            task.cancel()

    async def forget(self, name: str) -> None:
        """The deployment is being removed: its waker goes, its port is free."""
        sock = await self._stop_waker(name)
        if sock is not None:
            sock.close()
        self.last_used.pop(name, None)
        self.loads.pop(name, None)
        self.budget.forget(name)
        self._seen.pop(name, None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def touch(self, name: str) -> None:
        self.last_used[name] = self.clock()

    # -- load and unload ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def using(self, name: str, known: Deployment | None = None) -> AsyncIterator[float]:
        """Loads ``name`` if it is idle and keeps it loaded while the block runs; yields the seconds the load
        took (0 when it was loaded). ``known``: its row as just read (a running one needs no second look)."""
        self.in_flight[name] += 1
        try:
            loaded = known is not None and known.status == "running" and not self._locks.get(name, _FREE).locked()
            yield 0.0 if loaded else await self.ensure_loaded(name)
        finally:
            self.in_flight[name] -= 1
            if self.in_flight[name] <= 0:
                del self.in_flight[name]
                if self.keep_override.get(name, -1.0) == 0:  # keep_alive 0: unload after the reply
                    self._spawn(self.unload(name, "keep_alive 0 in a request"))
            self.touch(name)

    async def ensure_loaded(self, name: str) -> float:
        async with self._lock(name):
            dep = self._get(name)
            if dep.status == "running":
                return 0.0
            if dep.status in ("starting", "restarting"):
                return await self._wait_running(name)
            if dep.status != "idle":
                raise DeploymentNotRunning(
                    f"deployment {name} is {dep.status}", hint=f"tursi start {name}, or tursi logs {name}"
                )
            started = self.clock()
            async with self.admission(dep):
                self.supervisor.lifecycle(name, "loading", "a request arrived")
                await self.supervisor.start(dep, listener=await self._stop_waker(name))
                await self.supervisor.wait_ready(self._get(name), self.ready_timeout_s)
            took = self.clock() - started
            record = self.loads.setdefault(name, LoadRecord())
            record.count, record.last_s, record.total_s = record.count + 1, took, record.total_s + took
            self.supervisor.lifecycle(name, "loaded", f"in {took:.2f}s")
            self.touch(name)
            return took

    async def unload(self, name: str, reason: str) -> bool:
        """Stops the worker of a loaded deployment and keeps its port; False when it was not loaded."""
        async with self._lock(name):
            dep = self._get(name)
            if dep.status not in ("starting", "running", "restarting"):
                return dep.status == "idle"
            self.keep_override.pop(name, None)
            await self.supervisor.stop(name, reason=reason, status="idle")
            self.store.update_deployment(name, health=None)
            self._seen.pop(name, None)
            await self._start_waker(self._get(name))
            return True

    @contextlib.asynccontextmanager
    async def admission(self, dep: Deployment) -> AsyncIterator[None]:
        """Room for ``dep`` in the budget, made by unloading loaded deployments that serve nothing now and are not
        pinned, least recently used first; held (no other load starts) until the block has loaded it.
        InsufficientMemory, with nothing unloaded, when even that would not make room."""
        async with self._admission:
            for other in self._make_room(dep):
                await self.unload(other.name, f"unloaded to make room for {dep.name} (memory budget)")
            yield

    def _make_room(self, dep: Deployment) -> list[Deployment]:
        need = self.budget.need(dep)
        loaded = [d for d in self.store.list_deployments(all=False) if d.name != dep.name]
        held = {d.name: self.budget.held(d) for d in loaded}
        free = self.budget.total - sum(held.values())
        evict: list[Deployment] = []
        # requests in flight through tursid (gateway, wakers) and straight to the worker's port (its /metrics, as
        # the sampler last read it) both keep a deployment loaded
        movable = [
            d
            for d in loaded
            if not d.options.get("pin") and not self.in_flight.get(d.name) and not self._busy_direct(d.name)
        ]
        for other in sorted(movable, key=lambda d: self.last_used.get(d.name, 0.0)):
            if need <= free:
                break
            evict.append(other)
            free += held[other.name]
        log.info("admission name=%s need=%d free_after=%d budget=%d held=%s evict=%s", dep.name, need, free,
                 self.budget.total, held, [d.name for d in evict])  # fmt: skip
        if need <= free:
            return evict
        mib = 1 << 20
        shown = ", ".join(f"{d.name} {held[d.name] / mib:.0f} MiB{' (pinned)' if d.options.get('pin') else ''}"
                          for d in loaded)  # fmt: skip
        short = need - free
        raise InsufficientMemory(
            f"loading {dep.name} needs {need / mib:.0f} MiB; the budget is {self.budget.total / mib:.0f} MiB and "
            f"loaded are: {shown or 'nothing'}; {short / mib:.0f} MiB more would be needed after unloading "
            "everything that may be unloaded",
            hint="tursi stop a pinned or busy deployment, or raise tursid --memory-budget",
            need_bytes=need,
            budget_bytes=self.budget.total,
            loaded={d.name: held[d.name] for d in loaded},
        )

    async def _wait_running(self, name: str) -> float:
        started = self.clock()
        deadline = started + self.ready_timeout_s
        while self.clock() < deadline:
            dep = self._get(name)
            if dep.status == "running":
                return self.clock() - started
            if dep.status not in ("starting", "restarting"):
                break
            await asyncio.sleep(0.2)
        raise DeploymentNotRunning(f"deployment {name} did not become ready", hint=f"tursi logs {name}")

    def _get(self, name: str) -> Deployment:
        dep = self.store.get_deployment(name)
        if dep is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        return dep

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- idle check ---------------------------------------------------------------------------------

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            try:
                await self.check_idle()
            except Exception:
                log.exception("idle check failed")

    async def check_idle(self) -> None:
        now = self.clock()
        self._note_direct_traffic()
        for dep in self.store.list_deployments(all=False):
            if dep.status != "running" or self.in_flight.get(dep.name):
                continue
            if dep.name in self.keep_override:
                keep = self.keep_override[dep.name]
            else:
                keep = keep_alive_seconds(str(dep.options.get("keep_alive") or self.default_keep_alive))
            last = self.last_used.setdefault(dep.name, now)  # loaded before we looked: its clock starts now
            if keep is not None and now - last >= keep and not self._busy_direct(dep.name):
                log.info("unloading idle deployment name=%s keep_alive=%ss", dep.name, keep)
                await self.unload(dep.name, f"idle for {now - last:.0f}s (keep-alive {keep:g}s)")

    def _note_direct_traffic(self) -> None:
        """Requests straight to a worker's port, from the sampler's latest reading of its /metrics."""
        latest = self.sampler.latest or {}
        at = float(latest.get("at", 0.0))
        for row in latest.get("deployments", []):
            if row.get("mem_bytes"):
                self.budget.observe(row["name"], int(row["mem_bytes"]))
            count = row.get("requests")
            if count is None:
                continue
            before = self._seen.get(row["name"])
            if before is not None and before[0] < at and (count != before[1] or row.get("in_flight")):
                self.touch(row["name"])
            self._seen[row["name"]] = (at, int(count))

    def _busy_direct(self, name: str) -> bool:
        latest = self.sampler.latest or {}
        return any(r["name"] == name and r.get("in_flight") for r in latest.get("deployments", []))

    # -- wakers -------------------------------------------------------------------------------------

    async def _start_waker(self, dep: Deployment) -> None:
        if self.waker_app is None or dep.name in self._wakers:
            return
        try:
            listener = bind_listener(dep.host, dep.port)
        except OSError as e:
            log.warning("idle deployment %s: cannot hold port %d (%s): it loads through the gateway only",
                        dep.name, dep.port, e.strerror)  # fmt: skip
            return
        # the same limits as every listener: connections per address and in all, the header deadline (the body's
        # is the app's own, TURSI_BODY_TIMEOUT)
        runner = runner_for(self.waker_app(dep.name), self.limits, access_log=None, shutdown_timeout=WAKER_DRAIN_S)
        await runner.setup()
        site = LimitedTCPSite(runner, dep.host, dep.port, self.limits, sock=listener.dup())
        await site.start()
        self._wakers[dep.name] = Waker(listener, runner, site)

    async def _stop_waker(self, name: str) -> socket.socket | None:
        """Stops accepting on the idle port and returns the listening socket (for the worker); the requests the
        waker took are still passed on, and its runner is cleaned up once they finish."""
        waker = self._wakers.pop(name, None)
        if waker is None:
            return None
        await waker.site.stop()  # closes the waker's copy: from now on only the worker accepts
        task = asyncio.get_running_loop().create_task(waker.runner.cleanup())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return waker.listener
