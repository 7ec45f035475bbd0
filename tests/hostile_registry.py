"""A malicious OCI registry for the registry client's tests: a real HTTP server (aiohttp, on loopback, plain HTTP or
TLS with its own certificate) that answers whatever a test scripts: manifests whose digests are paths, configs that
name another artifact's key, bodies that lie about their length, trickles, redirects, token realms on another
address. Not a stand-in for a registry (tests/integration/registry_server.py runs the real CNCF Distribution): an
adversary, run in a background thread so the tests stay synchronous and call Tursi's real client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class HostileRegistry:
    """Serves ``manifests[pointer]`` and ``blobs[digest]`` (bytes, or a handler for a scripted answer) under any
    repository; ``challenge``: the WWW-Authenticate header of a 401 to any request without Authorization.
    ``seen``: (method, path, Authorization header) of every request, in order."""

    host: str = "127.0.0.1"
    tls_dir: Path | None = None  # TLS with a self-signed certificate made there; else plain HTTP
    manifests: dict[str, bytes | Handler] = field(default_factory=dict)
    blobs: dict[str, bytes | Handler] = field(default_factory=dict)
    routes: dict[str, Handler] = field(default_factory=dict)  # other paths (a token service, a CDN)
    challenge: str | None = None
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    port: int = 0
    ca_pem: str | None = None

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_dir else 'http'}://{self.netloc}"

    def add_blob(self, data: bytes) -> dict[str, Any]:
        """The descriptor of ``data``, now served."""
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}

    def add_manifest(self, doc: dict[str, Any], tag: str = "v1") -> str:
        body = json.dumps(doc).encode()
        self.manifests[tag] = self.manifests[digest_of(body)] = body
        return digest_of(body)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        self.seen.append((request.method, request.path_qs, auth))
        if request.path in self.routes:
            return await self.routes[request.path](request)
        if self.challenge and auth is None:
            return web.Response(status=401, headers={"WWW-Authenticate": self.challenge})
        parts = request.path.split("/")
        if request.path == "/v2/":
            return web.json_response({})
        if len(parts) >= 5 and parts[1] == "v2" and parts[-2] in ("manifests", "blobs"):
            pointer = request.match_info.get("tail", "").rsplit("/", 1)[-1]
            table = self.manifests if parts[-2] == "manifests" else self.blobs
            found = table.get(pointer)
            if found is None:
                return web.Response(status=404)
            if callable(found):
                return await found(request)
            kind = (
                "application/vnd.oci.image.manifest.v1+json" if parts[-2] == "manifests" else "application/octet-stream"
            )
            return web.Response(body=found, content_type=kind)
        return web.Response(status=404)

    def __enter__(self) -> HostileRegistry:
        self.port = self.port or _free_port(self.host)
        context = None
        if self.tls_dir is not None:
            from tursi.daemon.tls import ensure_self_signed

            cert, key, _ = ensure_self_signed(self.tls_dir, self.host)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.ca_pem = cert.read_text()
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, ssl_context=context)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise AssertionError("the hostile registry did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
