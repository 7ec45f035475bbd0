"""The dynamic batcher: coalescing, the max-batch cut, length groups, cancellation, the bounded line, errors, and
large requests cut into batches that interleave with other clients' requests."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from runtimes.onnx_embed import lane_groups, length_groups
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


@pytest.mark.parametrize(
    ("lengths", "max_batch", "groups"),
    [
        ([10, 300, 12, 9, 280, 11, 60], 32, [[9, 10, 11, 12], [60], [280], [300]]),  # 20 padded tokens > a call
        ([10, 300, 12, 9, 296, 11, 60], 32, [[9, 10, 11, 12], [60], [296, 300]]),  # 4 padded tokens < a call
        ([5] * 70, 32, [[5] * 6, [5] * 32, [5] * 32]),  # as few calls as max_batch allows
        ([22, 20, 21, 22, 20, 21], 32, [[20, 20, 21, 21, 22, 22]]),  # close lengths share a call
    ],
)
def test_length_groups_cost_the_least(lengths: list[int], max_batch: int, groups: list[list[int]]) -> None:
    """Groups minimise padded tokens plus a fixed cost a call (8 tokens), never over max_batch."""
    got = length_groups(lengths, max_batch)
    assert sorted(i for g in got for i in g) == list(range(len(lengths)))
    assert [[lengths[i] for i in g] for g in got] == groups


def test_lane_groups_split_what_would_leave_a_lane_idle() -> None:
    lengths = [100] * 32 + [10] * 4
    groups = length_groups(lengths, 32)
    assert [len(g) for g in groups] == [4, 32]
    lanes = lane_groups(groups, lengths, 2)
    assert sorted(i for g in lanes for i in g) == list(range(36))
    assert [len(g) for g in lanes] == [16, 16, 4]  # costliest first; no group over half the work
    assert lane_groups(groups, lengths, 1) == groups
    assert lane_groups([[0]], [300], 4) == [[0]]  # one text: nothing to split


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


def texts(n: int, tag: str = "big") -> list[str]:
    """``n`` distinct texts whose 'vectors' (their lengths) show their order: tag plus i spaces."""
    return [tag + " " * i for i in range(n)]


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)


def test_a_small_request_runs_between_the_batches_of_a_large_one() -> None:
    """A request larger than a batch is cut; a small one sent meanwhile runs in the next batch, and finishes first."""
    model = SlowLengths(0.02)
    done: list[str] = []

    async def main() -> tuple[Any, Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.0)

        async def send(name: str, items: list[str]) -> Any:
            got = await b.submit(items)
            done.append(name)
            return got

        big = asyncio.ensure_future(send("big", texts(20)))
        await until(lambda: len(model.calls) >= 2)  # the model is working on the big request's second slice
        small = await send("small", ["small"])
        return await big, small

    big, small = run(main())
    assert done == ["small", "big"]
    assert small == ([5], [5])
    assert big == ([3 + i for i in range(20)], [3 + i for i in range(20)])  # its slices reassembled in order
    assert all(len(c) <= 4 for c in model.calls)
    at = next(i for i, c in enumerate(model.calls) if "small" in c)
    assert at <= 3  # waited for the batch in progress, at most one more
    assert model.calls[at][0] == "small"  # fresh requests go first; the large one fills the rest
    assert sum(len(c) for c in model.calls) == 21  # nothing ran twice


def test_a_large_request_keeps_a_share_of_every_batch() -> None:
    """Small requests arriving faster than the model runs never starve a large one: every batch while it is
    unfinished carries some of its items, and they run in their order."""
    model = SlowLengths(0.005)

    async def main() -> None:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=8, max_wait_s=0.0, max_waiting=1000)
        big = asyncio.ensure_future(b.submit(texts(40)))
        await until(lambda: len(model.calls) >= 1)
        smalls = [asyncio.ensure_future(b.submit([f"s{i}"])) for i in range(200)]
        await big
        await asyncio.gather(*smalls)

    run(main())
    big_calls = [[t for t in c if t.startswith("big")] for c in model.calls]
    last = max(i for i, c in enumerate(big_calls) if c)
    assert all(big_calls[: last + 1])  # no batch without big items until it finished
    assert [t for c in big_calls for t in c] == texts(40)


def test_two_large_requests_take_turns() -> None:
    model = SlowLengths(0.005)

    async def main() -> list[Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.0)
        return await asyncio.gather(b.submit(texts(12, "a")), b.submit(texts(12, "b")))

    a, b_ = run(main())
    assert a == b_ == ([1 + i for i in range(12)], [1 + i for i in range(12)])
    has = {k: [i for i, c in enumerate(model.calls) if any(t.startswith(k) for t in c)] for k in "ab"}
    assert has["b"][0] < has["a"][-1]  # they interleave: neither waits for the other's end
    assert has["a"][0] < has["b"][-1]
    assert all(len(c) <= 4 for c in model.calls)


def test_a_large_request_whose_client_left_or_whose_input_failed_stops_running() -> None:
    model = SlowLengths(0.02)

    async def main() -> tuple[Any, Any, Any]:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.0)
        gone = asyncio.ensure_future(b.submit(texts(40, "gone")))
        bad = asyncio.ensure_future(b.submit([*texts(6, "bad"), "boom", *texts(20, "after")]))
        await until(lambda: len(model.calls) >= 2)
        gone.cancel()  # the client went away between its batches
        small = await b.submit(["small"])
        results = await asyncio.gather(gone, bad, return_exceptions=True)
        await until(lambda: not b.running)
        return small, *results

    small, gone, bad = run(main())
    assert small == ([5], [5])
    assert isinstance(gone, asyncio.CancelledError)
    assert isinstance(bad, ValueError)
    ran = [t for c in model.calls for t in c]
    assert sum(t.startswith("gone") for t in ran) <= 8  # only the slices taken before it left
    assert len({t for t in ran if t.startswith("after")}) <= 3  # only those that shared the slice with "boom"


def test_a_request_whose_client_disconnected_is_dropped_between_batches() -> None:
    """``gone()`` is polled before each batch: once it is true the rest of the request never runs."""
    model = SlowLengths(0.02)
    left = threading.Event()

    async def main() -> Any:
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_wait_s=0.0)
        big = asyncio.ensure_future(b.submit(texts(40), gone=left.is_set))
        await until(lambda: len(model.calls) >= 1)
        left.set()
        results = await asyncio.gather(big, return_exceptions=True)
        await until(lambda: not b.running)
        return results[0]

    assert isinstance(run(main()), asyncio.CancelledError)
    assert len(model.calls) <= 2  # the slice running when it left, at most one more
