"""Request guards shared by tursid and workers: body size before reading, a deadline for the body, the Host header
on loopback servers (a web page cannot reach 127.0.0.1 through DNS rebinding), same-site origin and a JSON media
type for state-changing requests (a web page cannot post a form or a no-cors fetch to them), and the JSON itself:
UTF-8, nesting, a cap on values, finite numbers, no lone surrogates, parsed off the event loop when large."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from tursi.core.addresses import is_loopback as is_loopback_bind
from tursi.core.errors import (
    CrossSiteRequest,
    HostNotAllowed,
    InvalidRequest,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedMediaType,
)
from tursi.core.settings import HttpSettings

# The deadlines and caps of this app (TURSI_BODY_TIMEOUT, TURSI_WRITE_TIMEOUT, ...): whoever builds the app sets
# them from the settings its main() loaded; an app without them gets the declared defaults.
HTTP_SETTINGS = web.AppKey("http_settings", HttpSettings)
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 100_000  # values and keys in one body: 2,048 inputs or a long chat history fit many times over
PARSE_OFF_LOOP_BYTES = 64 * 1024  # a body larger than this is parsed on a parser thread, not on the event loop
# Parser threads apart from any model's executor; two bound the CPU that big bodies can take at once. No thread
# starts until a big body arrives.
_PARSERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tursi-json")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def host_name(header: str) -> str:
    """'example.com:8080' -> 'example.com', '[::1]:80' -> '::1'."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def http_settings(app: web.Application) -> HttpSettings:
    """The app's HTTP settings (see HTTP_SETTINGS)."""
    return app.get(HTTP_SETTINGS) or HttpSettings()


def guard_middleware(
    max_body: int, loopback_only: bool, uploads: frozenset[str] = frozenset()
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """413 from Content-Length before any byte of the body is read (except on the ``uploads`` paths, whose
    handlers stream the body against their own cap); 421 for a foreign Host on loopback."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if loopback_only and request.transport is not None and request.transport.get_extra_info("peername"):
            name = host_name(request.headers.get("Host", "")).lower()
            if name not in LOOPBACK_HOSTS and not is_loopback_bind(name):  # any 127/8 literal: a bind to 127.0.0.2
                raise HostNotAllowed(f"Host {name!r} is not this machine's loopback name", param="host")
        length = request.content_length
        if length is not None and length > max_body and request.path not in uploads:
            raise RequestTooLarge(f"the body is {length} bytes; the limit is {max_body}")
        return await handler(request)

    return middleware


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json"})
UPLOAD_TYPES = frozenset({"application/x-tar", "application/octet-stream"})  # a .tursi bundle is a tar


def same_origin_middleware(uploads: frozenset[str] = frozenset()) -> Callable[..., Awaitable[web.StreamResponse]]:
    """What a web page on another site can send without a CORS preflight (a form or a ``fetch`` in no-cors mode)
    must not change state: 403 for a state-changing request whose ``Origin`` is not this server's own or whose
    ``Sec-Fetch-Site`` says another site; 415 for a body that is not ``application/json`` (a tar on the ``uploads``
    paths), which no such page can send."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method not in SAFE_METHODS:
            _refuse_cross_site(request)
            if request.body_exists:
                _require_media_type(request, UPLOAD_TYPES if request.path in uploads else JSON_TYPES)
        return await handler(request)

    return middleware


def _refuse_cross_site(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != f"{request.scheme}://{request.host}".lower():
        raise CrossSiteRequest(f"{request.method} from origin {origin[:200]!r} is refused: not this server's own")
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        raise CrossSiteRequest(f"{request.method} from a page on another site (Sec-Fetch-Site: {site}) is refused")


def _require_media_type(request: web.Request, accepted: frozenset[str]) -> None:
    given = request.headers.get("Content-Type")
    if given is None or request.content_type.lower() not in accepted:
        shown = repr(given[:100]) if given is not None else "(none)"
        raise UnsupportedMediaType(
            f"Content-Type {shown} is not accepted here: send {' or '.join(sorted(accepted))}",
            hint="with curl -d, add -H 'Content-Type: application/json'" if accepted == JSON_TYPES else None,
        )


async def read_json(request: web.Request, timeout_s: float | None = None) -> dict[str, Any]:
    """The request body as a JSON object: 408 if it trickles in for longer than ``timeout_s`` (default: the app's
    TURSI_BODY_TIMEOUT), 413 over the app's limit, 400 if ``parse_json_object`` refuses it. A body over
    PARSE_OFF_LOOP_BYTES is parsed on a parser thread, so the event loop (health checks, other clients) keeps
    running meanwhile."""
    return await parse_json_body(await read_body(request, timeout_s))


async def read_body(request: web.Request, timeout_s: float | None = None) -> bytes:
    """The request body's bytes (decoded as its Content-Encoding says): 408 if it trickles in for longer than
    ``timeout_s`` (default: the app's TURSI_BODY_TIMEOUT), 413 over the app's limit, 400 when it cannot be decoded."""
    if timeout_s is None:
        timeout_s = http_settings(request.app).body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:.0f} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(f"the body is over the limit of {request.client_max_size} bytes") from None
    except (RequestPayloadError, HttpProcessingError, ValueError, OSError) as e:  # a Content-Encoding it lacks
        raise InvalidRequest(f"the body cannot be read as sent: {type(e).__name__}") from None


async def parse_json_body(raw: bytes) -> dict[str, Any]:
    """``parse_json_object(raw)``, on a parser thread when ``raw`` is over PARSE_OFF_LOOP_BYTES."""
    if len(raw) > PARSE_OFF_LOOP_BYTES:
        return await asyncio.get_running_loop().run_in_executor(_PARSERS, parse_json_object, raw)
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object, else InvalidRequest: not UTF-8 JSON, not an object, more than MAX_JSON_VALUES
    values, nested deeper than MAX_JSON_DEPTH, a non-finite number (NaN, Infinity, 1e999) or a lone surrogate."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        raise InvalidRequest("the body must be JSON encoded as UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"the body is not valid UTF-8: {e}") from None
    if _count_values(text) > MAX_JSON_VALUES:
        raise InvalidRequest(f"the body has more than {MAX_JSON_VALUES} JSON values")
    try:
        body = json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
    except RecursionError:
        raise InvalidRequest(f"JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise InvalidRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    _check_tree(body)
    return body


def parse_json_text(text: str, field: str) -> Any:
    """A JSON text inside a request (a tool call's ``arguments``) with the body's own limits: InvalidRequest naming
    ``field`` when it is not JSON, nests deeper than MAX_JSON_DEPTH (100,000 ``[`` was a RecursionError, a 500),
    holds more than MAX_JSON_VALUES values, a non-finite number or a lone surrogate."""
    if _count_values(text) > MAX_JSON_VALUES:
        raise InvalidRequest(f"'{field}' has more than {MAX_JSON_VALUES} JSON values", param=field)
    try:
        value = json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
        _check_tree({field: value})
    except RecursionError:
        raise InvalidRequest(f"'{field}' nests deeper than {MAX_JSON_DEPTH} levels", param=field) from None
    except InvalidRequest as e:  # a non-finite number, too deep, a lone surrogate
        raise InvalidRequest(f"'{field}': {e.detail}", param=field) from None
    except ValueError:
        raise InvalidRequest(f"'{field}' is not valid JSON", param=field) from None
    return value


def _count_values(text: str) -> int:
    """An upper bound on the values and keys in a JSON text, found without parsing it (a few linear passes in C):
    every value or key after the first is preceded by a ',' or ':' outside strings, every container opens with
    '[' or '{'. Escaped backslashes and quotes go first, so every quote left opens or closes a string."""
    quotes = text.count('"')
    if quotes > 2 * MAX_JSON_VALUES + 2:  # more strings than values allowed (and keeps the split below small)
        return quotes // 2
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2])
    return sum(outside.count(c) for c in ",:[{") + 1


def _non_finite(name: str) -> Any:
    raise InvalidRequest(f"JSON numbers must be finite; {name} is not accepted")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidRequest(f"JSON numbers must be finite; {literal[:40]} is out of range")
    return value


def _check_tree(body: dict[str, Any]) -> None:
    """At most MAX_JSON_DEPTH levels, and no lone surrogate in any key or string: JSON can escape one
    ("\\ud800") but UTF-8 cannot carry it, so no tokenizer, database or log could take it. The error names the
    top-level field the string is under."""
    stack: list[tuple[Any, int, str]] = [(value, 2, key) for key, value in body.items()]
    for key in body:
        _check_text(key, key)
    while stack:
        node, depth, field = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, str):
            _check_text(node, field)
        elif isinstance(node, dict):
            for key, value in node.items():
                _check_text(key, field)
                stack.append((value, depth + 1, field))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, field) for value in node)


def _check_text(text: str, field: str) -> None:
    if text.isascii():
        return
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        raise InvalidRequest(
            f"'{field.encode('ascii', 'backslashreplace').decode()}' holds a string with a lone surrogate "
            f"(U+{ord(found.group()):04X} at character {found.start()}); text must be valid Unicode",
            param=field.encode("utf-8", "replace").decode(),
        )
