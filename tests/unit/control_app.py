"""tursid's control API in this process: the application tursid serves (its handlers, middlewares, SQLite state and
files, under a temporary TURSI_HOME), on aiohttp's test server. The server runs on an event loop in a background
thread, so tests stay synchronous, send exactly the bytes and headers they mean (http.client) and can use the real
ControlClient. For parsing, naming and guard cases; what needs tursid as a process (the Unix socket, signals, restore,
the connection deadlines of tursi.http.connections, real workers) stays in tests/integration."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from aiohttp.test_utils import TestServer

from tursi.client.control import ControlClient
from tursi.core.hardware import HardwareProfile
from tursi.core.settings import Settings
from tursi.daemon.app import build_app, open_daemon
from tursi.daemon.context import Daemon

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as the client saw it."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem(self) -> dict[str, Any]:
        """The problem+json body, or {} when the answer is not one."""
        return json.loads(self.body) if "problem+json" in self.headers.get("Content-Type", "") else {}


class ControlApp:
    """``build_app(open_daemon(settings))`` served on 127.0.0.1 (as by ``tursid --listen 127.0.0.1:PORT``), with
    ``env`` as the injected environment (TURSI_HOME is ``home``); without a token unless ``require_token``."""

    def __init__(
        self,
        home: Path,
        hardware: HardwareProfile,
        env: Mapping[str, str] | None = None,
        *,
        require_token: bool = False,
    ) -> None:
        settings = Settings.load({**(env or {}), "TURSI_HOME": str(home)})
        settings.ensure_dirs()
        self.daemon: Daemon = open_daemon(settings, hardware)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tursid-in-process", daemon=True)
        self._thread.start()
        self._server = TestServer(build_app(self.daemon, require_token=require_token), host="127.0.0.1")
        try:
            self.run(self._server.start_server())  # runs tursid's start-up: reconcile, sampler, log rotation
        except BaseException:
            self._stop_loop()
            raise
        self.port: int = self._server.port or 0
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """Send exactly ``body`` and ``headers`` (http.client adds only Host, Accept-Encoding, Content-Length)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return Answer(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    @property
    def client(self) -> ControlClient:
        """The CLI's own client, over TCP to this server."""
        return ControlClient(self.url)

    def close(self) -> None:
        """tursid's shutdown (workers stopped, sampler closed), then the loop and the state."""
        try:
            self.run(self._server.close())
        finally:
            self._stop_loop()
            self.daemon.store.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
