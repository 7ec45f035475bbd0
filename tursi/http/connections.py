"""Connection limits for the TCP servers (tursid --listen and workers).

aiohttp serves every connection from one event loop, so a slow client costs a file descriptor,
not a thread; what runs out is descriptors. Two limits keep a LAN neighbour from taking them all:

- at most ``per_client`` open connections from one address and ``total`` overall; a connection
  over either gets a one-line 503 ``too_many_connections`` problem and is closed before aiohttp
  parses anything;
- the first request's headers must arrive within ``header_timeout_s`` of the connection opening
  (a deadline set in connection_made, cancelled once aiohttp has parsed a request's headers): a
  connection that sends part of its headers, or nothing at all, is closed then. After a response,
  aiohttp's keep-alive timer takes over with the same time (a connection whose next request is
  incomplete by then is closed, and so is an idle one). Bodies have their own deadline (guards.py).
  With TLS the handshake gets the same deadline; connections are counted once it completes.

A stream that its client stops reading is cut after TURSI_WRITE_TIMEOUT (http/streaming.py); how
much the kernel parks for such a client first is up to its send buffer (TURSI_SEND_BUFFER caps it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tursi.core.settings import HttpSettings

log = logging.getLogger(__name__)
REFUSAL_LOG_S = 10.0


@dataclass
class ConnectionLimits:
    per_client: int = 256
    total: int = 1024
    header_timeout_s: float = 15.0
    send_buffer: int = 0  # bytes of kernel send buffer per connection; 0 leaves the kernel's autotuning
    open: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # refusals not yet logged
    _logged_at: float = float("-inf")

    @classmethod
    def from_settings(cls, http: HttpSettings) -> ConnectionLimits:
        """The limits ``http`` asks for, within what the descriptor limit leaves room for."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = max(16, soft - 64) if soft != resource.RLIM_INFINITY else 1 << 20  # descriptors for files, SQLite
        return cls(
            per_client=max(1, http.max_connections_per_client),
            total=max(1, min(http.max_connections, room)),
            header_timeout_s=max(0.5, http.header_timeout_s),
            send_buffer=max(0, http.send_buffer),
        )

    def admit(self, client: str) -> str | None:
        """None when a new connection from ``client`` may open (and counts it), else why not."""
        if sum(self.open.values()) >= self.total:
            return f"this server holds its limit of {self.total} connections"
        if self.open[client] >= self.per_client:
            return f"{client} holds its limit of {self.per_client} connections"
        self.open[client] += 1
        return None

    def note_refusal(self, why: str) -> None:
        """Logs a refused connection: the first, then at most one line per REFUSAL_LOG_S saying how many more (a
        flood of refusals must not become a flood of log lines: 1,100 in a second once grew the log by 75 MB)."""
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_S:
            more = f" ({self.refused - 1} more since the last line)" if self.refused > 1 else ""
            log.warning("connection refused: %s%s", why, more)
            self._logged_at, self.refused = now, 0

    def release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


def _refusal(detail: str) -> bytes:
    body = json.dumps(
        {
            "type": "https://tursi.dev/errors/too_many_connections",
            "title": "Too many connections",
            "status": 503,
            "detail": detail,
            "code": "too_many_connections",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _headers_parsed(handler: Any) -> bool:
    """Whether aiohttp's RequestHandler has parsed a whole request head (or refused a malformed one).

    It counts each parsed message in ``_request_count`` as data arrives; no public hook says so as early.
    Should that attribute go away, any data counts (only silent connections are cut then), and
    tests/integration/test_guards.py::test_slow_headers_and_connection_floods fails to say so.
    """
    count = getattr(handler, "_request_count", None)
    return not isinstance(count, int) or count > 0


class _Counted(asyncio.Protocol):
    """Stands in front of aiohttp's protocol: counts the connection, or refuses it without creating one."""

    def __init__(self, server: Any, limits: ConnectionLimits) -> None:
        self._server = server
        self._limits = limits
        self._inner: Any = None
        self._client = ""
        self._deadline: asyncio.TimerHandle | None = None  # for the first request's headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        why = self._limits.admit(self._client)
        if why is not None:
            self._limits.note_refusal(why)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_refusal(why))
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if self._limits.send_buffer and sock is not None:  # bounds what a slow reader parks in the kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._limits.send_buffer)
        self._inner = self._server()
        self._inner.connection_made(transport)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._limits.header_timeout_s, self._headers_late, transport)

    def _headers_late(self, transport: asyncio.BaseTransport) -> None:
        self._deadline = None
        if self._inner is not None:  # still open, and data_received has not seen a whole request head
            log.debug("connection from %s closed: no complete request headers in time", self._client)
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
            if self._deadline is not None and _headers_parsed(self._inner):
                self._deadline.cancel()
                self._deadline = None

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._inner is not None:
            self._limits.release(self._client)
            self._inner.connection_lost(exc)
            self._inner = None


class LimitedTCPSite(web.TCPSite):
    """A TCPSite whose connections go through ConnectionLimits."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ConnectionLimits,
        sock: socket.socket | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(runner, host, port, **kw)
        self._limits = limits
        self._sock = sock  # an already listening socket (handed over by tursid) instead of host:port

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        where: dict[str, Any] = (
            {"sock": self._sock}
            if self._sock is not None
            else {
                "host": self._host,
                "port": self._port,
                "backlog": self._backlog,
                "reuse_address": self._reuse_address,
                "reuse_port": self._reuse_port,
            }
        )
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Counted(server, self._limits),
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._limits.header_timeout_s if self._ssl_context else None,
            **where,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def runner_for(app: web.Application, limits: ConnectionLimits, **kw: Any) -> web.AppRunner:
    """An AppRunner whose keep-alive timer doubles as the header deadline after a connection's first request."""
    return web.AppRunner(app, keepalive_timeout=limits.header_timeout_s, **kw)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    shutdown_s: float,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` on host:port (or on ``sock``, already listening there) until SIGTERM or SIGINT, then shut
    down cleanly."""
    runner = runner_for(app, limits, handle_signals=False, access_log=None, shutdown_timeout=shutdown_s)
    await runner.setup()
    try:
        await LimitedTCPSite(runner, host, port, limits, sock=sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
