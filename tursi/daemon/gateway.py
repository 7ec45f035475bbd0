"""The gateway: one port for every deployment, routed by the request's ``model`` field.

It speaks what the workers speak (the OpenAI routes under ``/v1``, the Ollama routes under ``/api``, ``/rerank``),
lists every deployment with its state (``GET /v1/models``, ``/api/tags``, ``/api/ps``), and passes each request to
the worker of the deployment named by ``model`` (``name``, ``name:latest`` or the reference it was deployed from),
loading it first when it is idle (the seconds that took are in ``X-Tursi-Load-Seconds``). The workers stay the
only model servers: API keys, rate limits and request metrics are theirs, and the gateway tells them the client's
address (``X-Tursi-Forwarded-For``, believed only with tursid's secret), so a per-client limit is per client
through the gateway too.

The gateway never widens who can reach a deployment: a client from another machine reaches only deployments that
listen beyond loopback themselves. Host, Origin and media-type checks are the workers' own, applied here, and so
are the body's size cap, deadline and JSON limits (``read_json``'s, off the event loop when large). Nothing
happens before a request is authorized: the deployment's API key is checked here before an idle model is loaded or
an Ollama ``keep_alive`` unloads or pins it, and only the worker's own model routes (``MODEL_ROUTES``) load one: a
``favicon.ico`` or an ``<img>`` on a web page does not.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tursi import __version__
from tursi.core.durations import keep_alive_seconds
from tursi.core.errors import DeploymentNotFound, InvalidRequest, ModelNotFound, NotReady, Unauthorized
from tursi.core.names import REPLICA, is_replica
from tursi.core.settings import HttpSettings
from tursi.daemon.forward import Unreachable, forward
from tursi.daemon.residency import Residency
from tursi.daemon.state import Deployment, StateStore
from tursi.http.guards import (
    HTTP_SETTINGS,
    guard_middleware,
    is_loopback_bind,
    parse_json_body,
    read_body,
    same_origin_middleware,
)
from tursi.http.metrics import label_value
from tursi.http.problem import problem_middleware
from tursi.http.worker_routes import MODEL_ROUTES, authorized

MAX_BODY = 8 * 1024 * 1024  # the workers' own cap


class Gateway:
    def __init__(self, store: StateStore, residency: Residency, secret: str) -> None:
        self.store = store
        self.residency = residency
        self.secret = secret
        self.session: aiohttp.ClientSession | None = None
        self.requests: Counter[tuple[str, int]] = Counter()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def find(self, model: str, peer_loopback: bool) -> Deployment:
        name = model.removesuffix(":latest")
        one = self.store.get_deployment(name) if not is_replica(name) else None  # the usual case: one indexed row
        if one is not None and one.artifact_key and (peer_loopback or not is_loopback_bind(one.host)):
            return one
        deps = [d for d in self.store.list_deployments(all=True) if d.artifact_key and not is_replica(d.name)]
        found = [d for d in deps if d.name == name] or [d for d in deps if d.model == model]
        visible = [d for d in found if peer_loopback or not is_loopback_bind(d.host)]
        if len(visible) != 1:
            names = ", ".join(sorted(d.name for d in deps if peer_loopback or not is_loopback_bind(d.host)))
            raise ModelNotFound(f"no deployment serves model '{model}'", hint=f"models here: {names or 'none'}")
        return visible[0]

    def replicas(self, dep: Deployment) -> list[Deployment]:
        """``dep`` and its replicas (NAME#2, ...)."""
        if int(dep.options.get("replicas") or 1) <= 1:
            return [dep]
        children = [d for d in self.store.list_deployments(all=True) if d.name.startswith(dep.name + REPLICA)]
        return [dep, *children]

    def pick(self, group: list[Deployment], tried: set[str]) -> Deployment:
        """The serving replica with the fewest requests in flight; the first one (loaded on demand) when none
        serves."""
        ready = [d for d in group if d.status == "running" and d.health != "unhealthy" and d.name not in tried]
        if not ready:
            left = [d for d in group if d.name not in tried]
            return left[0] if left else group[0]
        return min(ready, key=lambda d: (self.residency.in_flight.get(d.name, 0), d.name))

    async def balance(self, request: web.Request, dep: Deployment, body: bytes | None) -> web.StreamResponse:
        """To one of ``dep``'s replicas; a replica that cannot be reached (killed, restarting) passes the request
        to the next before the client has seen anything."""
        group = self.replicas(dep)
        tried: set[str] = set()
        while True:
            target = self.pick(group, tried)
            try:
                return await self.pass_on(request, target, body)
            except Unreachable:
                tried.add(target.name)
                if len(tried) >= len(group):
                    raise
                group = [self.store.get_deployment(d.name) or d for d in group]

    async def pass_on(self, request: web.Request, dep: Deployment, body: bytes | None) -> web.StreamResponse:
        if self.session is None:
            raise NotReady("the gateway is starting")
        status = 500
        try:
            async with self.residency.using(dep.name, dep) as took:
                if took:
                    dep = self.store.get_deployment(dep.name) or dep
                headers = {"X-Tursi-Forwarded-For": request.remote or "", "X-Tursi-Gateway": self.secret}
                reply = {"X-Tursi-Load-Seconds": f"{took:.3f}"} if took else {}
                resp = await forward(request, dep, self.session, body, headers, reply)
                status = resp.status
                return resp
        except Exception as e:
            status = getattr(e, "http_status", 500)
            raise
        finally:
            self.requests[(dep.name, status)] += 1

    def metrics_page(self) -> str:
        lines = [
            "# HELP tursi_gateway_requests_total Requests the gateway passed on, by deployment and status.",
            "# TYPE tursi_gateway_requests_total counter",
        ]
        for (name, status), n in sorted(self.requests.items()):
            lines.append(f'tursi_gateway_requests_total{{deployment="{label_value(name)}",status="{status}"}} {n}')
        lines += [
            "# HELP tursi_gateway_loads_total Loads of an idle deployment, by deployment.",
            "# TYPE tursi_gateway_loads_total counter",
        ]
        loads = sorted(self.residency.loads.items())
        lines += [f'tursi_gateway_loads_total{{deployment="{label_value(n)}"}} {r.count}' for n, r in loads]
        lines += [
            "# HELP tursi_gateway_load_seconds_total Seconds spent loading idle deployments, by deployment.",
            "# TYPE tursi_gateway_load_seconds_total counter",
        ]
        lines += [
            f'tursi_gateway_load_seconds_total{{deployment="{label_value(n)}"}} {r.total_s:.3f}' for n, r in loads
        ]
        return "\n".join(lines) + "\n"


def gateway_secret(home: Path) -> tuple[str, str]:
    """(secret, its sha256): made once per TURSI_HOME (0600), so workers adopted after a tursid restart still
    believe the gateway."""
    path = home / "gateway.secret"
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if len(secret) < 32:
        secret = secrets.token_hex(32)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secret + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)
    return secret, hashlib.sha256(secret.encode()).hexdigest()


GATEWAY = web.AppKey("gateway", Gateway)
DEPLOYMENT = web.AppKey("deployment", str)
routes = web.RouteTableDef()


def _peer_loopback(request: web.Request) -> bool:
    return is_loopback_bind(request.remote or "")


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[GATEWAY].metrics_page(), content_type="text/plain")


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    data = [
        {
            "id": d.name,
            "object": "model",
            "created": int(d.created_at),
            "owned_by": "tursi",
            "source": d.model,
            "task": d.task,
            "status": d.status,
        }
        for d in _listed(request)
    ]
    return web.json_response({"object": "list", "data": data})


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [_ollama_model(d) for d in _listed(request)]})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    return web.json_response({"models": [_ollama_model(d) for d in _listed(request) if d.status == "running"]})


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


@routes.route("*", "/{tail:.*}")
async def pass_on(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    if (request.method, request.path) not in MODEL_ROUTES:
        raise DeploymentNotFound(
            f"no route {request.method} {request.path[:200]} on the gateway", hint="try /v1/models"
        )
    body = await read_body(request) if request.body_exists else b""
    doc = await parse_json_body(body) if body else {}
    model = doc.get("model", doc.get("name"))  # Ollama's /api/show and /api/delete once used "name"
    keep_alive = doc.get("keep_alive") if request.path.startswith("/api/") else None
    del doc  # routed: the bytes go on, the tree does not stay while the answer streams
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required: the gateway routes by it (GET /v1/models lists them)", param="model")
    dep = gateway.find(model, _peer_loopback(request))
    authorize(request, dep)
    if keep_alive is not None:
        gateway.residency.keep_override[dep.name] = _keep_alive(keep_alive)
    return await gateway.balance(request, dep, body or None)


def authorize(request: web.Request, dep: Deployment) -> None:
    """401 unless the request presents ``dep``'s API key (when it has one): before anything loads, unloads or pins
    it. The worker checks again; this check is the gateway's own, for what happens before the worker is asked."""
    headers = request.headers
    key = dep.options.get("api_key_sha256") or None
    if not authorized(request.path, headers.get("Authorization", ""), headers.get("X-Api-Key", ""), key):
        raise Unauthorized("this endpoint needs an API key: Authorization: Bearer <key> (or X-Api-Key)")


def _keep_alive(value: Any) -> float | None:
    """Ollama's ``keep_alive``: seconds as a number, or a duration (``5m``, ``0``, ``-1``); None: forever."""
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{value!r} is not a duration")
        return keep_alive_seconds(str(value))
    except ValueError as e:
        raise InvalidRequest(f"'keep_alive': {e} (like 5m, 30s, 0 or -1)", param="keep_alive") from None


def _listed(request: web.Request) -> list[Deployment]:
    loop = _peer_loopback(request)
    deps = request.app[GATEWAY].store.list_deployments(all=True)
    return [d for d in deps if d.artifact_key and not is_replica(d.name) and (loop or not is_loopback_bind(d.host))]


def _ollama_model(dep: Deployment) -> dict[str, Any]:
    return {
        "name": f"{dep.name}:latest",
        "model": f"{dep.name}:latest",
        "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(dep.created_at)),
        "size": 0,
        "digest": dep.artifact_key,
        "details": {"format": dep.format, "quantization_level": dep.quantization, "family": dep.task},
        "status": dep.status,
    }


def build_gateway_app(gateway: Gateway, loopback_only: bool) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware, guard_middleware(MAX_BODY, loopback_only), same_origin_middleware()],
        client_max_size=MAX_BODY,
    )
    app[GATEWAY] = gateway
    app.add_routes(routes)
    return app


# -- wakers: an idle deployment's own port --------------------------------------------------------

waker_routes = web.RouteTableDef()


@waker_routes.get("/health")
async def waker_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "state": "idle"})


@waker_routes.get("/ready")
async def waker_ready(request: web.Request) -> web.Response:
    raise NotReady("the model is unloaded (idle): the next request loads it")


@waker_routes.get("/metrics")
async def waker_metrics(request: web.Request) -> web.Response:
    return web.Response(text="# idle: the model is unloaded\n", content_type="text/plain")


@waker_routes.route("*", "/{tail:.*}")
async def waker_pass_on(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    if (request.method, request.path) not in MODEL_ROUTES:
        raise DeploymentNotFound(f"no route {request.method} {request.path[:200]} here (the model stays unloaded)")
    dep = gateway.store.get_deployment(request.app[DEPLOYMENT])
    if dep is None:
        raise DeploymentNotFound("this deployment was removed")
    authorize(request, dep)
    body = await read_body(request) if request.body_exists else None
    return await gateway.pass_on(request, dep, body)


def waker_app_factory(gateway: Gateway, http: HttpSettings | None = None) -> Any:
    """What Residency serves on an idle deployment's port: the worker's guards, then load and pass on."""

    def make(name: str) -> web.Application:
        dep = gateway.store.get_deployment(name)
        loopback = dep is None or is_loopback_bind(dep.host)
        app = web.Application(
            middlewares=[problem_middleware, guard_middleware(MAX_BODY, loopback), same_origin_middleware()],
            client_max_size=MAX_BODY,
        )
        app[GATEWAY] = gateway
        app[DEPLOYMENT] = name
        if http is not None:
            app[HTTP_SETTINGS] = http
        app.add_routes(waker_routes)
        return app

    return make


__all__ = ["GATEWAY", "Gateway", "build_gateway_app", "gateway_secret", "waker_app_factory"]
