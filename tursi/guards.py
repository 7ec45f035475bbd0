"""Request guards shared by tursid and workers: body size before reading, a deadline for the body, JSON nesting,
and the Host header on loopback servers (a web page cannot reach 127.0.0.1 through DNS rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tursi.errors import HostNotAllowed, InvalidRequest, RequestTimeout, RequestTooLarge

BODY_TIMEOUT_S = float(os.environ.get("TURSI_BODY_TIMEOUT", "30"))  # seconds a request body may take to arrive
WRITE_TIMEOUT_S = float(os.environ.get("TURSI_WRITE_TIMEOUT", "30"))  # seconds a client may leave a stream unread
MAX_JSON_DEPTH = 32
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def is_loopback_bind(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """'example.com:8080' -> 'example.com', '[::1]:80' -> '::1'."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def guard_middleware(max_body: int, loopback_only: bool) -> Callable[..., Awaitable[web.StreamResponse]]:
    """413 from Content-Length before any byte of the body is read; 421 for a foreign Host on loopback."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if loopback_only and request.transport is not None and request.transport.get_extra_info("peername"):
            name = host_name(request.headers.get("Host", "")).lower()
            if name not in LOOPBACK_HOSTS:
                raise HostNotAllowed(f"Host {name!r} is not this machine's loopback name", param="host")
        length = request.content_length
        if length is not None and length > max_body and not request.path.endswith("/artifacts/load"):
            raise RequestTooLarge(f"the body is {length} bytes; the limit is {max_body}")
        return await handler(request)

    return middleware


async def read_json(request: web.Request, timeout_s: float = BODY_TIMEOUT_S) -> dict[str, Any]:
    """The request body as a JSON object: 408 if it trickles in too slowly, 413 over the app's limit,
    400 if it is not a JSON object or nests deeper than MAX_JSON_DEPTH."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:.0f} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(f"the body is over the limit of {request.client_max_size} bytes") from None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"body is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidRequest(f"JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest
