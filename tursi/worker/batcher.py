"""Dynamic batching for encoder workers: concurrent requests share one runtime call.

An idle worker runs a request at once (a lone client pays no waiting window). Requests that arrive while a batch
runs queue up and go together in the next call, up to ``max_batch`` texts; once requests have been coalescing,
the batcher also waits up to ``max_wait_s`` for stragglers before it starts a batch. The runtime then groups texts
by length so padding stays small. The waiting line is bounded like the gate's: past it, 503 with Retry-After.

One request's input must never fail another's: when a call that served several requests raises, each of them runs
again alone, so only the request whose input broke the call gets the error (a 400 where the runtime says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from tursi.core.errors import ServerBusy
from tursi.core.spec import DeploymentSpec

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[tuple[Any, list[int]]]


class Batcher:
    def __init__(
        self,
        run: Callable[[list[str], int], tuple[Any, list[int]]],
        executor: Executor,
        max_batch: int = DeploymentSpec.max_batch,
        max_wait_s: float = DeploymentSpec.batch_wait_ms / 1000.0,
        max_waiting: int = DeploymentSpec.max_queue,
        retry_after_s: int = 1,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self.pending: deque[_Job] = deque()
        self.running = False
        self.batches = 0  # runtime calls made
        self.requests = 0  # requests served through them

    @property
    def waiting(self) -> int:
        return len(self.pending)

    async def submit(self, texts: list[str]) -> tuple[Any, list[int]]:
        """(vectors, token count per text) for ``texts``, computed together with whatever else is queued."""
        if self.running and len(self.pending) >= self.max_waiting:
            raise ServerBusy(
                f"{len(self.pending)} requests are already waiting (limit {self.max_waiting}); retry shortly",
                retry_after=self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        job = _Job(texts, loop.create_future())
        self.pending.append(job)
        if not self.running:
            self.running = True
            loop.create_task(self._drain())
        return await job.future  # a client that goes away cancels its future; the batch skips it

    async def _drain(self) -> None:
        coalescing = False
        try:
            while self.pending:
                if coalescing and self.max_wait_s > 0 and self._queued_texts() < self.max_batch:
                    await asyncio.sleep(self.max_wait_s)
                jobs = self._take()
                if not jobs:
                    continue
                await self._run(jobs)
                coalescing = len(jobs) > 1 or bool(self.pending)
        finally:
            self.running = False

    async def _run(self, jobs: list[_Job]) -> None:
        """One runtime call for ``jobs``; if it raises and served several requests, each runs again alone."""
        texts = [t for job in jobs for t in job.texts]
        loop = asyncio.get_running_loop()
        try:
            vectors, counts = await loop.run_in_executor(self.executor, self.run, texts, self.max_batch)
        except Exception as e:  # noqa: BLE001 - handed to the request that caused it, and only to it
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(e)
                return
            log.info("a batch of %d requests failed (%s: %s); running them one by one", len(jobs), type(e).__name__, e)
            for job in jobs:
                if not job.future.done():  # a client that left meanwhile is skipped
                    await self._run([job])
            return
        self.batches += 1
        self.requests += len(jobs)
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            if not job.future.done():
                job.future.set_result((vectors[start:end], counts[start:end]))
            start = end

    def _queued_texts(self) -> int:
        return sum(len(job.texts) for job in self.pending)

    def _take(self) -> list[_Job]:
        jobs: list[_Job] = []
        n = 0
        while self.pending:
            job = self.pending[0]
            if job.future.done():  # cancelled while it waited
                self.pending.popleft()
                continue
            if jobs and n + len(job.texts) > self.max_batch:
                break
            jobs.append(self.pending.popleft())
            n += len(job.texts)
        return jobs
