"""Passing one HTTP request on to a worker and its answer back, streamed as it comes (SSE and NDJSON chunks are
written as the worker writes them). A client that goes away closes the upstream connection, which the worker
sees as a disconnect and stops generating."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tursi.core.errors import WorkerUnreachable
from tursi.daemon.state import Deployment

# Hop-by-hop headers (RFC 9110 7.6.1) and those the client library sets itself.
HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "host", "content-length"}
)
# a request's body is passed on as aiohttp decoded it (a gzip body reaches the worker plain); an answer's as it came
DECODED = ("content-encoding",)
TRUSTED = ("x-tursi-forwarded-for", "x-tursi-gateway")  # only tursid sets these: a client's copy is dropped
WHOLE_MAX = 1 << 20  # answers up to this size (with a Content-Length) are passed on whole; longer ones stream
CHECKED = ("origin", "sec-fetch-site")  # the gateway checked them against its own origin; the worker's differs


# The worker could not be asked (refused, reset or gone before it answered): nothing reached the client yet, so the
# request may go to another replica.
Unreachable = WorkerUnreachable


def worker_url(dep: Deployment, path_qs: str) -> str:
    host = "127.0.0.1" if dep.host in ("0.0.0.0", "") else ("[::1]" if dep.host == "::" else dep.host)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{dep.port}{path_qs}"


async def forward(
    request: web.Request,
    dep: Deployment,
    session: aiohttp.ClientSession,
    body: bytes | None,
    headers: dict[str, str],
    reply_headers: dict[str, str],
) -> web.StreamResponse:
    """``request`` (with ``body``, already read) sent to ``dep``'s worker with ``headers`` added; its answer back
    with ``reply_headers`` added."""
    dropped = TRUSTED + CHECKED + DECODED
    sent = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k.lower() not in dropped}
    sent.update(headers)
    try:
        upstream = await session.request(
            request.method, worker_url(dep, request.path_qs), data=body, headers=sent, allow_redirects=False
        )
    except (aiohttp.ClientError, OSError) as e:
        raise Unreachable(f"deployment {dep.name} did not answer: {e}", hint=f"tursi logs {dep.name}") from e
    async with upstream:
        length = upstream.content_length
        if length is not None and length <= WHOLE_MAX:  # a JSON answer: read whole, sent in one write
            try:
                data = await upstream.read()
            except (aiohttp.ClientError, OSError) as e:
                raise Unreachable(f"deployment {dep.name} broke off its answer: {e}") from e
            whole = web.Response(status=upstream.status, reason=upstream.reason, body=data)
            _copy_headers(upstream, whole, reply_headers)
            return whole
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        _copy_headers(upstream, resp, reply_headers)
        await resp.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        except (aiohttp.ClientError, ConnectionError):
            return resp  # one side went away: closing ``upstream`` tells the worker
        await resp.write_eof()
    return resp


def _copy_headers(upstream: aiohttp.ClientResponse, resp: web.StreamResponse, extra: dict[str, str]) -> None:
    for key, value in upstream.headers.items():
        if key.lower() not in HOP:
            resp.headers.add(key, value)
    resp.headers.update(extra)
