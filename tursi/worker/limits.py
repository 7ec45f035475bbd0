"""Rate limiting of inference routes: a middleware over the worker's RateLimiter."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from tursi.core.errors import RateLimited, Unauthorized
from tursi.http import worker_routes
from tursi.http.apikeys import matches
from tursi.http.metrics import route_label
from tursi.http.ratelimit import Decision
from tursi.worker.state import STATE, WorkerState

DECISION = web.RequestKey("rate_decision", Decision)


def presented_key(request: web.Request) -> str:
    return worker_routes.presented_key(request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", ""))


@web.middleware
async def api_key_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    st = request.app[STATE]
    headers = request.headers
    if not worker_routes.authorized(
        request.path, headers.get("Authorization", ""), headers.get("X-Api-Key", ""), st.api_key_sha256
    ):
        st.metrics.observe(route_label(request), 401, 0.0)
        raise Unauthorized("this endpoint needs an API key: Authorization: Bearer <key> (or X-Api-Key)")
    return await handler(request)


def client_id(request: web.Request, st: WorkerState) -> str:
    """Whose bucket a request draws on: the deployment's API key when the request presents it (hashed:
    keys never sit in memory tables or logs), else the client's address. A key nobody checked
    names no one: keyed on it, a fresh random token per request would get a fresh bucket each time."""
    key = presented_key(request)
    if st.api_key_sha256 and key and matches(key, st.api_key_sha256):
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "addr:" + address_group(forwarded_for(request, st) or request.remote or "unknown")


def forwarded_for(request: web.Request, st: WorkerState) -> str | None:
    """The client's address as tursid's gateway passed it on: believed only with the gateway's secret (any local
    process could send the header; only tursid holds the secret)."""
    address = request.headers.get("X-Tursi-Forwarded-For")
    secret = request.headers.get("X-Tursi-Gateway")
    if not address or not secret or not st.gateway_sha256:
        return None
    return address if matches(secret, st.gateway_sha256) else None


def address_group(remote: str) -> str:
    """The address a client cannot multiply: IPv4 as is, IPv6 by /64 (one host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    st = request.app[STATE]
    if st.limiter is None or request.method != "POST" or not request.path.startswith("/v1/"):
        return await handler(request)  # health, readiness, metrics and model listing are never limited
    decision = st.limiter.check(client_id(request, st))
    request[DECISION] = decision
    if not decision.allowed:
        st.metrics.observe(route_label(request), 429, 0.0)
        raise RateLimited(
            f"rate limit {st.limiter.spec} exceeded for this client; retry in {decision.retry_after_s}s",
            _headers=decision.headers(),
        )
    return await handler(request)


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    decision = request.get(DECISION)
    if decision is not None:
        response.headers.update(decision.headers())
