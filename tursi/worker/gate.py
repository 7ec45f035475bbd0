"""One model, many clients: a fair (FIFO) gate with room for ``capacity`` at once and a bounded waiting line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tursi.core.errors import ServerBusy


class Gate:
    def __init__(self, max_waiting: int, retry_after_s: int = 1, capacity: int = 1) -> None:
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self.capacity = max(1, capacity)
        self._sem = asyncio.Semaphore(self.capacity)  # wakes waiters in arrival order
        self.admitted = 0  # running + waiting

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - self.capacity)

    @property
    def running(self) -> int:
        return min(self.admitted, self.capacity)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self.max_waiting + self.capacity:
            raise ServerBusy(
                f"{self.waiting} requests are already waiting (limit {self.max_waiting}); retry shortly",
                retry_after=self.retry_after_s,
            )
        self.admitted += 1
        try:
            async with self._sem:
                yield
        finally:
            self.admitted -= 1
