"""The dashboard (Tursi Desktop): a web page served by tursid on a loopback port, opened by `tursi ui`.

Logging in: `tursi ui` asks tursid (over its 0600 socket) for a one-time login token and prints
``http://127.0.0.1:PORT/ui/login?token=...``. That URL, opened once within LOGIN_TOKEN_TTL_S, becomes a session: an
HttpOnly, SameSite=Strict cookie. The page then speaks the control API on its own origin with that cookie; a request
that changes state must also carry the session's CSRF token (``X-CSRF-Token``), and any request with a foreign
``Origin`` or ``Sec-Fetch-Site: cross-site`` is refused, as is a foreign ``Host`` (DNS rebinding). The port serves
loopback only. The playground's model calls go through the gateway's routing (``/ui/play/...``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web
from yarl import URL

from tursi.core.errors import (
    CrossSiteRequest,
    CsrfFailed,
    DeploymentNotFound,
    InvalidRequest,
    NotReady,
    SessionRequired,
)
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.remote import TokenGuard
from tursi.daemon.ui_sessions import LOGIN_TOKEN_TTL_S, Session
from tursi.http.guards import read_json

log = logging.getLogger(__name__)

COOKIE = "tursi_ui"
CSRF_HEADER = "X-CSRF-Token"
ASSETS = {"app.js": "text/javascript", "login.js": "text/javascript", "app.css": "text/css"}
PUBLIC = ("/ui/login", "/ui/assets/")  # reachable without a session: the login, and the page's static files
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


SESSION = "tursi.session"  # the request's Session, set by the middleware
routes = web.RouteTableDef()


def session_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every request but the login and the assets needs a live session cookie (401 otherwise; the page itself is
    answered with a short "log in with `tursi ui`" page); a state-changing one also the session's CSRF token (403).
    Any request that says it comes from another origin or site is refused (403), whatever its method."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        return await gate(request, handler)

    return middleware


def is_dashboard_request(request: web.Request) -> bool:
    """On tursid's TLS listener: a request for the dashboard (its pages, or the API with its session cookie and no
    bearer token), which ``gate`` checks instead of the control token."""
    if "Authorization" in request.headers:
        return False
    return request.path == "/" or request.path.startswith("/ui/") or COOKIE in request.cookies


async def gate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    _refuse_foreign(request)
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = request.app[DAEMON].ui_sessions.find(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET" and request.path in ("/", "/ui", "/ui/"):
            return _page("log-in.html", status=401)
        raise SessionRequired("no dashboard session: open the link `tursi ui` prints", hint="tursi ui --open")
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), session.csrf
    ):
        raise CsrfFailed(f"a state-changing request from the dashboard must carry its {CSRF_HEADER} header")
    request[SESSION] = session
    return await handler(request)


def _refuse_foreign(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}".lower()
    if origin is not None and origin.lower() != own:
        raise CrossSiteRequest(f"a request from origin {origin[:200]!r} is refused: not the dashboard's own")
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        raise CrossSiteRequest(f"a request from another site (Sec-Fetch-Site: {site}) is refused")


def _page(name: str, status: int = 200) -> web.Response:
    body = resources.files("tursi.daemon").joinpath("dashboard_assets", name).read_bytes()
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8", headers=_NO_STORE)


_NO_STORE = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


@routes.get("/ui/login")
async def login(request: web.Request) -> web.StreamResponse:
    """The one-time link `tursi ui` printed: a session cookie, then the dashboard (the token leaves the URL)."""
    redeemed = request.app[DAEMON].ui_sessions.redeem(request.query.get("token", ""))
    if redeemed is None:
        return _page("log-in.html", status=401)
    cookie, _ = redeemed
    resp = web.HTTPSeeOther("/ui/", headers=_NO_STORE)
    _set_cookie(resp, cookie, request)
    return resp


@routes.post("/ui/login")
async def login_with_token(request: web.Request) -> web.Response:
    """Another machine, on tursid's TLS listener: the control token (``{"token": ...}``) logs the browser in,
    checked and throttled as a bearer token is."""
    daemon: Daemon = request.app[DAEMON]
    body = await read_json(request)
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise InvalidRequest("'token' must be tursid's control token", param="token")
    TokenGuard(daemon.settings.home).check(request.remote or "unknown", f"Bearer {token}")
    cookie, _ = daemon.ui_sessions.open()
    resp = web.json_response({"logged_in": True}, headers=_NO_STORE)
    _set_cookie(resp, cookie, request)
    return resp


def _set_cookie(resp: web.StreamResponse, cookie: str, request: web.Request) -> None:
    resp.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", path="/", secure=request.secure)


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/ui/")


@routes.get("/ui/")
async def index(request: web.Request) -> web.Response:
    return _page("index.html")


@routes.get("/ui/assets/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise DeploymentNotFound(f"no dashboard asset {name!r}")
    body = resources.files("tursi.daemon").joinpath("dashboard_assets", name).read_bytes()
    return web.Response(body=body, content_type=ASSETS[name], charset="utf-8", headers=_NO_STORE)


@routes.get("/ui/session")
async def session_info(request: web.Request) -> web.Response:
    """What the page needs to start: its CSRF token and the daemon it speaks to."""
    daemon: Daemon = request.app[DAEMON]
    session: Session | None = request.get(SESSION)
    if session is None:  # the control socket serves these routes too, with no session to give
        raise SessionRequired("no dashboard session: open the link `tursi ui` prints", hint="tursi ui --open")
    return web.json_response(
        {
            "csrf": session.csrf,
            "hardware": daemon.hardware.to_dict(),
            "memory_budget_bytes": daemon.residency.budget.total if daemon.residency.budget else None,
            "gateway": daemon.settings.gateway,
        },
        headers=_NO_STORE,
    )


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.Response:
    request.app[DAEMON].ui_sessions.end(request.cookies.get(COOKIE))
    resp = web.json_response({"logged_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


@routes.get("/ui/history")
async def history(request: web.Request) -> web.Response:
    """The sampler's recent samples (the last minutes), oldest first: what the charts start from."""
    return web.json_response(list(request.app[DAEMON].sampler.history), headers=_NO_STORE)


@routes.route("*", "/ui/play/{tail:.*}")
async def play(request: web.Request) -> web.StreamResponse:
    """The playground's model calls (``/ui/play/v1/chat/completions`` with ``model``): routed as the gateway
    routes them, so an idle deployment loads and replicas share the work."""
    from tursi.daemon.gateway import pass_on

    inner = request.clone(rel_url=URL("/" + request.match_info["tail"]).with_query(request.query))
    return await pass_on(inner)


def login_url(where: tuple[str, int], token: str) -> str:
    host, port = where
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/ui/login?token={token}"


control_routes = web.RouteTableDef()  # on the control API (the 0600 socket, or TCP with the control token)


@control_routes.post("/v1/ui/login-token")
async def new_login_token(request: web.Request) -> web.Response:
    """A one-time login link for the dashboard (`tursi ui`)."""
    daemon: Daemon = request.app[DAEMON]
    where = daemon.ui_address
    if where is None:
        raise NotReady("the dashboard is not being served (TURSI_UI is off, or its port was in use)")
    token = daemon.ui_sessions.new_login_token()
    return web.json_response({"url": login_url(where, token), "expires_in_s": LOGIN_TOKEN_TTL_S})
