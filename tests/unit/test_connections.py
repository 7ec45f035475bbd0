"""The first request's header deadline of tursi.http.connections, on an in-process aiohttp server over real sockets."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tursi.http.connections import ConnectionLimits, LimitedTCPSite, runner_for

DEADLINE_S = 0.5


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(DEADLINE_S * 2)  # outlives the header deadline: it must not cut a request it has seen
    return web.Response(text="served")


async def _exchange(port: int, sent: bytes) -> tuple[bytes, float]:
    """What the server answers to ``sent`` before closing, and after how long it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    try:
        writer.write(sent)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=DEADLINE_S * 10)
        return answer, time.monotonic() - t0
    finally:
        writer.close()


async def _scenario(limits: ConnectionLimits) -> list[tuple[bytes, float]]:
    app = web.Application()
    app.router.add_get("/slow", _slow)
    runner = runner_for(app, limits, access_log=None)
    await runner.setup()
    try:
        await LimitedTCPSite(runner, "127.0.0.1", 0, limits).start()
        port = runner.addresses[0][1]
        return await asyncio.gather(
            _exchange(port, b""),  # nothing at all
            _exchange(port, b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: "),  # headers begun, never ended
            _exchange(port, b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
    finally:
        await runner.cleanup()


def test_header_deadline_counts_from_the_connection_opening() -> None:
    limits = ConnectionLimits(header_timeout_s=DEADLINE_S)
    (silent, silent_s), (half, half_s), (whole, whole_s) = asyncio.run(_scenario(limits))
    assert (silent, half) == (b"", b"")  # both closed without an answer...
    assert DEADLINE_S * 0.8 <= silent_s < DEADLINE_S * 6  # ...once the deadline passed, not before
    assert DEADLINE_S * 0.8 <= half_s < DEADLINE_S * 6
    assert whole.startswith(b"HTTP/1.1 200 ")  # headers in time: served in full
    assert whole.endswith(b"served")
    assert whole_s >= DEADLINE_S * 2
    assert limits.open == {}  # every closed connection was released
