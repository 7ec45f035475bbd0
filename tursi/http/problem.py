"""aiohttp middleware that turns every error into application/problem+json with a stable code."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from tursi.core.errors import InternalError, TursiError, problem_for

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
OLLAMA_PREFIX = "/api/"

_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def problem_response(exc: BaseException, headers: dict[str, str] | None = None, path: str = "") -> web.Response:
    body = problem_for(exc)
    if path.startswith(OLLAMA_PREFIX):  # Ollama's clients read the message from a string "error"
        body["error"] = body["detail"]
    return web.Response(status=body["status"], text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers)


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except TursiError as e:
        return problem_response(e, headers=e.headers() or None, path=request.path)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        err = TursiError(e.reason or "error")
        err.http_status = e.status
        err.code = _HTTP_CODES.get(e.status, f"http_{e.status}")
        err.title = e.reason
        allow = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
        return problem_response(err, headers=allow, path=request.path)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(InternalError("internal error; see the server log"))
