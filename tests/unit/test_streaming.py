"""tursi.http.streaming.EventStream on an in-process aiohttp server over real sockets: events in order, an early
error with its real status, the error event after the commit, and the write deadline for a client that never reads."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tursi.core.errors import DeploymentNotFound, InvalidSpec, problem_for
from tursi.http.problem import problem_middleware
from tursi.http.streaming import EventStream, Flavour

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """``handler`` on POST / of a server on 127.0.0.1 with tursid's problem middleware; yields its URL."""
    app = web.Application(middlewares=[problem_middleware])
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def streaming(
    flavour: Flavour, events: list[Any], fail_after: int | None = None, error: Exception | None = None
) -> Handler:
    """A handler that sends ``events`` and raises ``error`` once ``fail_after`` of them are out."""

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = EventStream(request, flavour, what="test")
        async with stream:
            for i, event in enumerate(events):
                if i == fail_after and error is not None:
                    raise error
                await stream.send(event)
            if fail_after == len(events) and error is not None:
                raise error
        return await stream.finish()

    return handler


async def fetch(handler: Handler) -> tuple[int, str, bytes]:
    async with serving(handler) as url, aiohttp.ClientSession() as session, session.post(url) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read()


def test_ndjson_events_arrive_in_order() -> None:
    events = [{"event": "status", "message": f"step {i}", "n": i} for i in range(50)] + [{"event": "ready"}]
    status, ctype, body = asyncio.run(fetch(streaming("ndjson", events)))
    assert (status, ctype) == (200, "application/x-ndjson")
    assert [json.loads(line) for line in body.splitlines()] == events


def test_an_error_before_the_first_event_keeps_its_status() -> None:
    error = DeploymentNotFound("no deployment named 'x'", hint="tursi ps")
    status, ctype, body = asyncio.run(fetch(streaming("ndjson", [{"event": "status"}], fail_after=0, error=error)))
    assert status == 404
    assert ctype.startswith("application/problem+json")
    assert json.loads(body) == problem_for(error)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (InvalidSpec("--bits must be 4 or 8", param="bits", hint="see tursi up --help"), "invalid_spec", 400),
        (ValueError("a bug"), "internal_error", 500),  # a builtin exception is ours: 500, never the user's fault
    ],
)
def test_an_error_after_the_first_event_is_the_last_ndjson_event(error: Exception, code: str, status: int) -> None:
    events = [{"event": "status", "message": "resolved"}, {"event": "status", "message": "converting"}]
    got, _, body = asyncio.run(fetch(streaming("ndjson", events, fail_after=2, error=error)))
    lines = [json.loads(line) for line in body.splitlines()]
    assert got == 200  # committed with the first event
    assert lines[:2] == events
    problem = problem_for(error)  # what `tursi up` raises from; "error": where Ollama's clients read the message
    assert lines[2] == {"event": "error", **problem, "error": problem["detail"]}
    assert (lines[2]["code"], lines[2]["status"]) == (code, status)
    assert len(lines) == 3


def test_sse_frames_and_the_error_chunk() -> None:
    events: list[Any] = [{"choices": [{"delta": {"content": "héllo"}}]}, "[DONE]"]
    status, ctype, body = asyncio.run(fetch(streaming("sse", events)))
    assert (status, ctype) == (200, "text/event-stream")
    assert body == 'data: {"choices": [{"delta": {"content": "héllo"}}]}\n\ndata: [DONE]\n\n'.encode()

    error = InvalidSpec("the runtime refused", param="prompt")
    _, _, body = asyncio.run(fetch(streaming("sse", events[:1], fail_after=1, error=error)))
    frames = body.decode().split("\n\n")
    assert frames[-1] == ""
    assert json.loads(frames[1].removeprefix("data: ")) == {
        "error": {**problem_for(error), "message": "the runtime refused"}  # OpenAI clients raise on "error"
    }
    assert "data: [DONE]" not in body.decode()


def test_a_text_stream_that_fails_is_cut_not_ended() -> None:
    status, ctype, body = asyncio.run(fetch(streaming("text", ["line 1\n", "line 2\n"])))
    assert (status, ctype, body) == (200, "text/plain; charset=utf-8", b"line 1\nline 2\n")
    with pytest.raises(aiohttp.ClientPayloadError):  # the reader can tell it is incomplete
        asyncio.run(fetch(streaming("text", ["line 1\n"], fail_after=1, error=ValueError("disk gone"))))


async def _stalled_reader(deadline_s: float) -> tuple[bool, int, float]:
    """A handler streams 64 KiB events as fast as it can to a client that never reads; returns whether the stream
    was cut, the bytes it got out first and how long the last write blocked before the cut."""
    cut = asyncio.Event()
    result: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # else the kernel parks megabytes first
        stream = EventStream(request, "ndjson", deadline_s=deadline_s)
        chunk, sent = {"event": "status", "pad": "x" * 65536}, 0
        loop = asyncio.get_running_loop()
        while sent < 1 << 30:  # a client that reads nothing cannot take a GiB: the cut comes long before
            t0 = loop.time()
            if not await stream.send(chunk):
                result.update(blocked=loop.time() - t0, sent=sent, gone=stream.gone)
                break
            sent += 65536
        cut.set()
        return await stream.finish()

    async with serving(handler) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, never read
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        try:
            await asyncio.wait_for(cut.wait(), timeout=30)  # polls nothing: the handler says when it was cut
        finally:
            stalled.close()
    return bool(result.get("gone")), int(result.get("sent", -1)), float(result.get("blocked", -1))


def test_a_client_that_never_reads_is_cut_after_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tursi.http.streaming")
    gone, sent, blocked = asyncio.run(_stalled_reader(deadline_s=0.3))
    assert gone
    assert 0 < sent < 1 << 30  # some events went out before the buffers filled
    assert blocked >= 0.25  # the write that hit a full buffer waited out the deadline, then was dropped
    assert "client stopped reading" in caplog.text
