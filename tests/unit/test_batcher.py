"""The dynamic batcher: coalescing, the max-batch cut, length groups, cancellation, the bounded line, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from runtimes.onnx_embed import length_groups
from tursi.core.errors import ServerBusy
from tursi.worker.batcher import Batcher


class SlowLengths:
    """A stand-in model: the 'vector' of a text is its length; each call takes a while and is recorded."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str], max_batch: int) -> tuple[Any, list[int]]:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.seconds)
        if any(t == "boom" for t in texts):
            raise ValueError("model failed")
        return [len(t) for t in texts], [len(t) for t in texts]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_lone_request_runs_at_once_and_concurrent_ones_coalesce() -> None:
    model = SlowLengths()

    async def main() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=32, max_wait_s=0.0)
        first = await b.submit(["a"])  # idle: runs at once, alone
        busy = asyncio.ensure_future(b.submit(["busy"]))
        await asyncio.sleep(0.01)  # the model is now working on "busy"
        rest = await asyncio.gather(*(b.submit(["x" * i]) for i in range(1, 11)))
        await busy
        return [first, *rest, (b.batches, b.requests)]

    first, *rest, counts = run(main())
    assert first == ([1], [1])
    assert [r[0] for r in rest] == [[i] for i in range(1, 11)]  # each caller gets its own slice, in order
    assert model.calls[:2] == [["a"], ["busy"]]
    assert len(model.calls[2]) == 10  # the ten that arrived while the model was busy go together
    assert counts == (3, 12)


def test_max_batch_cuts_between_requests() -> None:
    model = SlowLengths()

    async def main() -> None:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.0)
        await asyncio.gather(b.submit(["warm"]), *(b.submit(["a", "b"]) for _ in range(5)))

    run(main())
    assert [len(c) for c in model.calls] == [3, 4, 4]  # never over 4, never splitting a request


def test_bounded_line_cancellation_and_errors() -> None:
    model = SlowLengths(0.2)

    async def main() -> tuple[int, list[Any]]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=8, max_wait_s=0.0, max_waiting=2)
        running = asyncio.ensure_future(b.submit(["first"]))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(b.submit([t])) for t in ("gone", "boom")]
        await asyncio.sleep(0)
        with pytest.raises(ServerBusy):
            await b.submit(["one too many"])
        waiting[0].cancel()  # the client went away: its text never reaches the model
        results = await asyncio.gather(running, *waiting, return_exceptions=True)
        return b.waiting, results

    left, (first, gone, boom) = run(main())
    assert first == ([5], [5])
    assert isinstance(gone, asyncio.CancelledError)
    assert isinstance(boom, ValueError)
    assert ["gone"] not in model.calls
    assert left == 0


def test_length_groups_limit_padding() -> None:
    lengths = [10, 300, 12, 9, 280, 11, 60]
    groups = length_groups(lengths, max_batch=32)
    assert sorted(i for g in groups for i in g) == list(range(7))
    assert [sorted(lengths[i] for i in g) for g in groups] == [[9, 10, 11, 12], [60], [280, 300]]
    assert [len(g) for g in length_groups([5] * 70, max_batch=32)] == [32, 32, 6]


def test_a_failing_input_fails_only_its_own_request() -> None:
    """The model raises for a whole call when one text is bad; the batch's other requests still get answers."""
    model = SlowLengths(0.05)

    async def main() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=32, max_wait_s=0.0)
        busy = asyncio.ensure_future(b.submit(["busy"]))
        await asyncio.sleep(0.01)  # the model is working on "busy": the next four queue up and go together
        rest = [b.submit(t) for t in (["a"], ["bb", "boom"], ["ccc"], ["dddd", "e"])]
        return await asyncio.gather(busy, *rest, return_exceptions=True)

    busy, a, boom, c, d = run(main())
    assert isinstance(boom, ValueError)
    assert [busy, a, c, d] == [([4], [4]), ([1], [1]), ([3], [3]), ([4, 1], [4, 1])]
    assert ["a", "bb", "boom", "ccc", "dddd", "e"] in model.calls  # they did share the call that failed
