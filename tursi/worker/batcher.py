"""Dynamic batching for encoder workers: concurrent requests share one runtime call, and a large request is cut into
batches that interleave with everyone else's work.

An idle worker runs a request at once (a lone client pays no waiting window). Requests that arrive while a batch
runs queue up and go together in the next call; once requests have been coalescing, the batcher also waits up to
``max_wait_s`` for stragglers before it starts a batch that is not full. A batch holds at most ``max_batch`` items
(texts, or the encodings the worker made of them), taken in this order:

1. Fresh requests (none of their items has run yet), first come first served, each whole when it fits. The first
   one that does not fit ends this step, unless it is larger than a batch or the batch is still empty: then it is
   cut, its first items go now and the rest becomes a started request.
2. Started requests, round-robin, fill what is left, but only an eighth of the batch (at least one item) when fresh
   requests are in it: step 1 always leaves them that much, so a stream of small requests slows a large one down
   but never stops it, and a batch that carries small requests stays short.

So a small request sent while a large one runs waits for the rest of the batch in progress and one short batch,
not for the whole large request. The runtime then groups a batch's texts by length so padding stays small. The
waiting line is bounded like the gate's: past ``max_waiting`` requests, 503 with Retry-After.

One request's input must never fail another's: when a call that served several requests raises, each of their
slices runs again alone, so only the request whose input broke the call gets the error (a 400 where the runtime
says why); its remaining items are dropped, like those of a request whose client went away (its future cancelled,
or ``gone()`` true when it is polled before each batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from tursi.core.errors import ServerBusy
from tursi.core.spec import DeploymentSpec

log = logging.getLogger(__name__)

STATS_EVERY_S = 30.0  # a busy batcher logs its time split at most this often
IDLE_UNDER_LOAD_S = 1.0  # a pause between runs shorter than this counts as idle time under load


@dataclass(eq=False)
class _Job:
    items: list[Any]
    future: asyncio.Future[tuple[Any, list[int]]]
    gone: Callable[[], bool] | None  # whether its client went away (polled before each batch)
    taken: int = 0  # items handed to batches so far
    parts: list[Any] = field(default_factory=list)  # each finished slice's vectors, in order
    counts: list[int] = field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.items) - self.taken


@dataclass(frozen=True)
class _Slice:
    job: _Job
    start: int
    end: int


@dataclass
class BatcherStats:
    """Where the model thread's time went. ``gap_s``: between two runs while work was queued (the coalescing wait and
    hand-over); ``idle_s``: nothing was queued (clients were reading answers or sending the next request; pauses of
    ``IDLE_UNDER_LOAD_S`` or more are no load and not counted)."""

    batches: int = 0
    items: int = 0
    cut_requests: int = 0  # requests larger than what one batch had room for, run as several slices
    run_s: float = 0.0
    gap_s: float = 0.0
    idle_s: float = 0.0

    def line(self) -> str:
        total = self.run_s + self.gap_s + self.idle_s or 1.0
        return (
            f"batches={self.batches} items={self.items} mean_batch={self.items / max(1, self.batches):.1f} "
            f"cut_requests={self.cut_requests} model_run={self.run_s:.2f}s ({100 * self.run_s / total:.0f}%) "
            f"between_batches={self.gap_s:.2f}s ({100 * self.gap_s / total:.0f}%) "
            f"idle={self.idle_s:.2f}s ({100 * self.idle_s / total:.0f}%)"
        )


class Batcher:
    def __init__(
        self,
        run: Callable[[list[Any], int], tuple[Any, list[int]]],
        executor: Executor,
        max_batch: int = DeploymentSpec.max_batch,
        max_wait_s: float = DeploymentSpec.batch_wait_ms / 1000.0,
        max_waiting: int = DeploymentSpec.max_queue,
        retry_after_s: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.fresh: deque[_Job] = deque()
        self.started: deque[_Job] = deque()  # cut requests with items left, served round-robin
        self.running = False
        self.batches = 0  # runtime calls made
        self.requests = 0  # requests served through them
        self.stats = BatcherStats()  # since the last stats line in the log
        self._last_end: float | None = None  # when the previous runtime call returned
        self._drained = False  # the line emptied since then
        self._last_line = clock()
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self.fresh) + len(self.started)

    async def submit(self, items: list[Any], gone: Callable[[], bool] | None = None) -> tuple[Any, list[int]]:
        """(vectors, token count per item) for ``items``, computed together with whatever else is queued. When
        ``gone()`` turns true (its client disconnected), what is left of it is dropped and this raises
        CancelledError, as it does when the caller is cancelled."""
        if self.running and self.waiting >= self.max_waiting:
            raise ServerBusy(
                f"{self.waiting} requests are already waiting (limit {self.max_waiting}); retry shortly",
                retry_after=self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        job = _Job(list(items), loop.create_future(), gone)
        self.fresh.append(job)
        if not self.running:
            self.running = True
            self._task = loop.create_task(self._drain())
        return await job.future  # a client that goes away cancels its future; batches skip what is left of it

    async def _drain(self) -> None:
        coalescing = False
        try:
            while self._drop_gone():
                if coalescing and self.max_wait_s > 0 and self._queued_items() < self.max_batch:
                    await asyncio.sleep(self.max_wait_s)
                batch = self._take()
                if not batch:
                    continue
                await self._run(batch)
                coalescing = len({id(s.job) for s in batch}) > 1 or bool(self.waiting)
        finally:
            self.running = False
            self._drained = True
            self._maybe_log()

    async def _run(self, batch: list[_Slice]) -> None:
        """One runtime call for ``batch``; if it raises and served several requests, each slice runs again alone."""
        items = [item for s in batch for item in s.job.items[s.start : s.end]]
        loop = asyncio.get_running_loop()
        started = self.clock()
        self._count_gap(started)
        try:
            vectors, counts = await loop.run_in_executor(self.executor, self.run, items, self.max_batch)
        except Exception as e:  # noqa: BLE001 - handed to the request that caused it, and only to it
            self._last_end = self.clock()
            self.stats.run_s += self._last_end - started
            if len(batch) == 1:
                if not batch[0].job.future.done():
                    batch[0].job.future.set_exception(e)
                return
            log.info("a batch of %d slices failed (%s: %s); running them one by one", len(batch), type(e).__name__, e)
            for s in batch:
                if not s.job.future.done():  # a client that left meanwhile is skipped
                    await self._run([s])
            return
        self._last_end = self.clock()
        self.stats.run_s += self._last_end - started
        self.batches += 1
        self.stats.batches += 1
        self.stats.items += len(items)
        offset = 0
        for s in batch:
            n = s.end - s.start
            self._deliver(s.job, vectors[offset : offset + n], counts[offset : offset + n])
            offset += n

    def _deliver(self, job: _Job, vectors: Any, counts: list[int]) -> None:
        if job.future.done():
            return
        job.parts.append(vectors)
        job.counts.extend(counts)
        if len(job.counts) == len(job.items):
            self.requests += 1
            job.future.set_result((_concat(job.parts), job.counts))

    def _count_gap(self, now: float) -> None:
        if self._last_end is None:
            return
        gap = now - self._last_end
        if not self._drained:
            self.stats.gap_s += gap
        elif gap < IDLE_UNDER_LOAD_S:  # longer pauses are no load, not overhead
            self.stats.idle_s += gap
        self._drained = False

    def _queued_items(self) -> int:
        return sum(job.left for job in self.fresh) + sum(job.left for job in self.started)

    def _drop_gone(self) -> bool:
        """Forgets requests whose client went away or that failed; whether any work is left."""
        for line in (self.fresh, self.started):
            for job in line:
                if job.gone is not None and not job.future.done() and job.gone():
                    job.future.cancel()
            if any(job.future.done() for job in line):
                kept = [job for job in line if not job.future.done()]
                line.clear()
                line.extend(kept)
        return bool(self.fresh or self.started)

    def _take(self) -> list[_Slice]:
        batch: list[_Slice] = []
        share = max(1, self.max_batch // 8)  # what started requests get of a batch that carries fresh ones
        room_fresh = self.max_batch - share if self.started and self.max_batch > 1 else self.max_batch
        while self.fresh and room_fresh > 0:
            job = self.fresh[0]
            if job.left > room_fresh and batch and job.left <= self.max_batch:
                break  # it fits a batch of its own: it goes first in the next one
            n = min(job.left, room_fresh)
            batch.append(self._slice(job, n))
            room_fresh -= n
            self.fresh.popleft()
            if job.left:
                self.started.append(job)
                self.stats.cut_requests += 1
        taken = sum(s.end - s.start for s in batch)
        room = min(share, self.max_batch - taken) if batch else self.max_batch
        while self.started and room > 0:
            job = self.started.popleft()
            n = min(job.left, room)
            batch.append(self._slice(job, n))
            room -= n
            if job.left:
                self.started.append(job)
        return batch

    @staticmethod
    def _slice(job: _Job, n: int) -> _Slice:
        s = _Slice(job, job.taken, job.taken + n)
        job.taken += n
        return s

    def _maybe_log(self) -> None:
        now = self.clock()
        if self.stats.batches and now - self._last_line >= STATS_EVERY_S:
            log.info("batcher %s", self.stats.line())
            self.stats = BatcherStats()
            self._last_line = now


def _concat(parts: list[Any]) -> Any:
    """One request's vectors from the slices it ran in (numpy rows, or a list where the runtime returns one)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], list):
        return [row for part in parts for row in part]
    import numpy as np

    return np.concatenate(parts)
