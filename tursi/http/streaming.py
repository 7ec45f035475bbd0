"""One way to stream a response: NDJSON events (tursid's progress and stats), SSE (the worker's generations) or
plain text (log lines).

Every stream written through ``EventStream`` gets the same three things:

- **A late commit.** Nothing is sent until the first event (or an explicit ``commit()``), so a route that fails
  before it has anything to say still answers with a real status code and a problem+json body, like
  llama-cpp-python's server pulling its first chunk before it commits to HTTP 200.
- **A write deadline.** A client that stops reading is cut after ``deadline_s`` (TURSI_WRITE_TIMEOUT): a stalled
  reader must not hold a model, a gate slot or a task for ever. Once cut, or once the client has gone, every
  later write is a no-op that returns False; the route's work carries on or stops as the route decides.
- **One error event.** A failure after the commit cannot change the status line, so it is sent in the stream:
  NDJSON ``{"event": "error", <problem>}`` (what ``tursi up``/``build`` read), SSE ``data: {"error": <problem,
  with "message">}`` (what OpenAI clients raise on); a text stream has no frame for it and is cut instead.

Use::

    stream = EventStream(request, "ndjson", what="build")
    async with stream:  # an error before the first event propagates; after it, it is streamed
        await stream.send({"event": "status", "message": "..."})
    return await stream.finish()
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from tursi.core.errors import TursiError, problem_for
from tursi.http import guards

log = logging.getLogger(__name__)

Flavour = Literal["ndjson", "sse", "text"]
_HEADERS: dict[str, dict[str, str]] = {
    "ndjson": {"Content-Type": "application/x-ndjson"},
    "sse": {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    "text": {"Content-Type": "text/plain; charset=utf-8"},
}


class EventStream:
    """A streamed response to ``request`` in one ``flavour``; see the module docstring."""

    def __init__(
        self, request: web.Request, flavour: Flavour, *, what: str = "stream", deadline_s: float | None = None
    ) -> None:
        self.request = request
        self.flavour = flavour
        self.what = what  # names the route in the log: "up failed"
        self.deadline_s = guards.http_settings(request.app).write_timeout_s if deadline_s is None else deadline_s
        self.response = web.StreamResponse(headers=_HEADERS[flavour])
        self.committed = False
        self.gone = False  # the client went away, or was cut for not reading
        self._ended = False

    async def commit(self) -> bool:
        """Send the status line and headers now (HTTP 200); False when the client is already gone."""
        if not self.committed:
            self.committed = True
            return await self._deadline(self.response.prepare(self.request))
        return not self.gone

    async def send(self, event: Any) -> bool:
        """One event: a JSON object (any flavour but text), or a string (an SSE ``data:`` line such as
        ``[DONE]``, or text). Commits first if needed. False when the client is gone."""
        return await self.send_bytes(self.encode(event))

    async def send_bytes(self, data: bytes) -> bool:
        """Bytes already in the stream's format (a pre-encoded SSE frame, a chunk of a log file)."""
        if not await self.commit():
            return False
        return await self._deadline(self.response.write(data))

    def encode(self, event: Any) -> bytes:
        if self.flavour == "ndjson":
            return (json.dumps(event) + "\n").encode()
        if self.flavour == "sse":
            data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
            return f"data: {data}\n\n".encode()
        return str(event).encode()

    async def fail(self, exc: BaseException) -> None:
        """The error event for ``exc`` (a problem body, as the error middleware would answer it)."""
        problem = problem_for(exc)
        if self.flavour == "ndjson":  # "error": the message where Ollama's clients look for it
            await self.send({"event": "error", **problem, "error": problem["detail"]})
        elif self.flavour == "sse":
            await self.send({"error": {**problem, "message": problem["detail"]}})
        else:
            self._cut()  # plain text has no error frame: a broken stream tells the reader it is incomplete

    async def finish(self) -> web.StreamResponse:
        """End the stream (committing an empty one if nothing was sent); the handler returns what this returns."""
        if not self._ended:
            self._ended = True
            if await self.commit():
                await self._deadline(self.response.write_eof())
        return self.response

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        """Before the commit an error propagates (a real status code); after it, it becomes the error event."""
        if not isinstance(exc, Exception) or not self.committed:
            return False
        if not isinstance(exc, TursiError):
            log.error("%s failed", self.what, exc_info=exc)
        await self.fail(exc)
        return True

    async def _deadline(self, write: Coroutine[Any, Any, object]) -> bool:
        """Await one write under the deadline; False (and the write dropped) when the client is gone."""
        if self.gone:
            write.close()  # the coroutine is never started
            return False
        try:
            async with asyncio.timeout(self.deadline_s):
                await write
            return True
        except TimeoutError:
            log.warning("client stopped reading for %.0f s; stream cut", self.deadline_s)
            self._cut()
        except (ConnectionResetError, RuntimeError):  # the client went away (or the transport is closed)
            self.gone = True
        return False

    def _cut(self) -> None:
        self.gone = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()  # a producer watching transport.is_closing() stops too
