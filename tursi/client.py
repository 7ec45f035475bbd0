"""Control client: HTTP over the daemon's Unix socket (or TCP), with the standard library only.

The CLI must start fast, so no aiohttp/requests here.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from tursi.errors import DaemonUnavailable, InternalError, TursiError, error_for_code
from tursi.settings import Settings


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def _error_from(status: int, raw: bytes) -> TursiError:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or "code" not in body:
        err: TursiError = InternalError(f"tursid answered HTTP {status}: {raw[:200]!r}")
        return err
    return problem_to_error(body)


def problem_to_error(body: dict[str, Any]) -> TursiError:
    cls = error_for_code(str(body.get("code")))
    extra = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "code", "hint")}
    err = cls(str(body.get("detail", "")), hint=body.get("hint"), **extra)
    if cls is TursiError:  # an unknown code from a newer daemon: keep what it said
        err.code, err.http_status = str(body.get("code")), int(body.get("status", 500))
    return err


class ControlClient:
    def __init__(self, url: str, *, timeout: float | None = 30.0, token: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.token = token
        parsed = urlparse(url)
        self.scheme = parsed.scheme
        if parsed.scheme == "unix":
            self.socket_path = parsed.path
        elif parsed.scheme in ("http", "https"):
            self.netloc = parsed.netloc
        else:
            raise DaemonUnavailable(f"unsupported daemon address {url!r}: use unix:///path or http(s)://host:port")

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return _UnixConnection(self.socket_path, timeout)
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.netloc, timeout=timeout)
        return http.client.HTTPConnection(self.netloc, timeout=timeout)

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = self._conn(timeout if timeout is not None else self.timeout)
        headers = {"Accept": "application/json"}
        if self.token and self.scheme != "unix":
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        except (TimeoutError, FileNotFoundError, ConnectionRefusedError, ConnectionResetError, OSError) as e:
            conn.close()
            raise DaemonUnavailable(
                f"cannot reach tursid at {self.url}: {e.strerror or e}",
                hint="start it with `tursid`, or unset TURSI_NO_AUTOSTART",
            ) from e
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise _error_from(resp.status, raw)
        return resp

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        resp = self._send(method, path, body, query)
        try:
            return json.loads(resp.read() or b"null")
        finally:
            resp.close()

    def stream_lines(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Iterator[bytes]:
        """Lines of a streamed response (NDJSON events or log text), as they arrive."""
        resp = self._send(method, path, body, query, timeout=None)
        try:
            while True:
                line = resp.readline()
                if not line:
                    return
                yield line
        finally:
            resp.close()

    def stream_events(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        for line in self.stream_lines(method, path, body, query):
            if line.strip():
                yield json.loads(line)

    def healthy(self) -> bool:
        try:
            self._send("GET", "/health", timeout=2.0).close()
            return True
        except TursiError:
            return False

    @staticmethod
    def quote(name: str) -> str:
        return quote(name, safe="")


def daemon_url(settings: Settings, override: str | None = None) -> str:
    return override or settings.host or f"unix://{settings.socket_path}"


def connect(settings: Settings, override: str | None = None) -> ControlClient:
    """A client for the chosen daemon; starts a local tursid in the background when none answers."""
    url = daemon_url(settings, override)
    client = ControlClient(url, token=settings.token)
    local_default = url == f"unix://{settings.socket_path}"
    if not local_default or not settings.autostart or client.healthy():
        return client
    start_daemon(settings)
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if client.healthy():
            return client
        time.sleep(0.05)
    raise DaemonUnavailable(f"started tursid but it did not answer on {url}", hint=f"see {settings.daemon_log}")


def start_daemon(settings: Settings) -> None:
    settings.ensure_dirs()
    log = Path(settings.daemon_log).open("ab")
    env = {**os.environ, "TURSI_HOME": str(settings.home)}
    subprocess.Popen(
        [sys.executable, "-m", "tursi.daemon"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    log.close()
