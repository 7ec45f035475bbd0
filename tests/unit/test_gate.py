from __future__ import annotations

import asyncio

import pytest

from tursi.core.errors import ServerBusy
from tursi.worker.gate import Gate


def test_gate_is_fifo_and_bounded() -> None:
    async def scenario() -> tuple[list[int], int]:
        gate = Gate(max_waiting=2)
        order: list[int] = []
        release = asyncio.Event()

        async def job(i: int) -> None:
            async with gate.slot():
                order.append(i)
                await release.wait()

        tasks = [asyncio.create_task(job(i)) for i in range(3)]  # one runs, two wait
        await asyncio.sleep(0)
        assert gate.waiting == 2
        with pytest.raises(ServerBusy) as info:
            async with gate.slot():
                pass
        retry = info.value.headers()["Retry-After"]
        release.set()
        await asyncio.gather(*tasks)
        return order, int(retry)

    order, retry_after = asyncio.run(scenario())
    assert order == [0, 1, 2]
    assert retry_after >= 1


def test_gate_frees_its_slot_when_a_request_fails() -> None:
    async def scenario() -> int:
        gate = Gate(max_waiting=0)
        with pytest.raises(RuntimeError):
            async with gate.slot():
                raise RuntimeError("boom")
        async with gate.slot():
            return gate.admitted

    assert asyncio.run(scenario()) == 1
