"""One model context, many clients: a fair (FIFO) gate with a bounded waiting line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tursi.core.errors import ServerBusy


class Gate:
    def __init__(self, max_waiting: int, retry_after_s: int = 1) -> None:
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._lock = asyncio.Lock()  # asyncio.Lock wakes waiters in arrival order
        self.admitted = 0  # running + waiting

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self.max_waiting + 1:
            raise ServerBusy(
                f"{self.waiting} requests are already waiting (limit {self.max_waiting}); retry shortly",
                retry_after=self.retry_after_s,
            )
        self.admitted += 1
        try:
            async with self._lock:
                yield
        finally:
            self.admitted -= 1
