"""Builds the tursid application and runs it on a 0600 Unix socket."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from converters.cache import remove_stale_staging
from tursi.core.addresses import gateway_enabled, parse_listen
from tursi.core.hardware import HardwareProfile, detect_cached
from tursi.core.settings import Settings
from tursi.daemon import artifacts, bundles, dashboard, deployments, plan_preview, registry_routes, system
from tursi.daemon.budget import Budget, budget_from
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.gateway import GATEWAY, Gateway, build_gateway_app, gateway_secret, waker_app_factory
from tursi.daemon.lock import InstanceLock
from tursi.daemon.logfiles import rotation_loop
from tursi.daemon.memory import release_free_memory
from tursi.daemon.remote import TokenGuard, token_middleware
from tursi.daemon.residency import Residency
from tursi.daemon.sampler import Sampler
from tursi.daemon.state import StateStore
from tursi.daemon.supervisor import Supervisor
from tursi.http.connections import ConnectionLimits, LimitedTCPSite, runner_for
from tursi.http.guards import HTTP_SETTINGS, guard_middleware, http_settings, is_loopback_bind, same_origin_middleware
from tursi.http.problem import problem_middleware

log = logging.getLogger(__name__)


_ROTATION = web.AppKey("rotation", asyncio.Task)
_TRIM = web.AppKey("trim", asyncio.Task)


async def _trim_loop(every_s: float = 30.0) -> None:
    while True:
        release_free_memory()  # after an up, a conversion or a burst of requests, give the pages back
        await asyncio.sleep(every_s)


SAMPLE_HISTORY_S = 300.0  # what the dashboard's charts show: the last five minutes of samples
MAX_BODY = 1024 * 1024  # control requests are small; bundles stream past this on their own route
UPLOADS = frozenset({"/v1/artifacts/load"})  # bodies that are a tar (a bundle), not JSON


def build_app(daemon: Daemon, require_token: bool = True, loopback_only: bool = True) -> web.Application:
    middlewares = [
        problem_middleware,
        guard_middleware(MAX_BODY, loopback_only, uploads=UPLOADS),
        same_origin_middleware(uploads=UPLOADS),
    ]
    if require_token:  # TCP requests need the token; the Unix socket's 0600 mode is its own check
        browser = (dashboard.is_dashboard_request, dashboard.gate)
        middlewares.append(token_middleware(TokenGuard(daemon.settings.home), browser))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app[HTTP_SETTINGS] = daemon.settings.http
    app.add_routes(system.routes)
    app.add_routes(deployments.routes)
    app.add_routes(bundles.routes)  # before artifacts: /v1/artifacts/load and /build are not keys
    app.add_routes(artifacts.routes)
    app.add_routes(registry_routes.routes)
    app.add_routes(plan_preview.routes)
    app.add_routes(dashboard.control_routes)
    if require_token:  # over TLS, another machine's browser logs in with the control token
        app.add_routes(dashboard.routes)
        app[GATEWAY] = daemon.gateway

    async def on_startup(app: web.Application) -> None:
        removed = remove_stale_staging(daemon.settings.artifacts_dir)
        if removed:
            log.info("removed %d half-made artifacts", removed)
        daemon.supervisor.reconcile(daemon.settings.artifacts_dir)
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2, thread_name_prefix="tursid"))
        await daemon.sampler.start()
        await daemon.gateway.start()
        await daemon.residency.start()
        s = daemon.settings
        app[_ROTATION] = loop.create_task(
            rotation_loop(s.logs_dir, s.log_max_bytes, s.log_files, max(1.0, s.sample_interval_s), (s.daemon_log,))
        )
        app[_TRIM] = loop.create_task(_trim_loop())

    async def on_shutdown(app: web.Application) -> None:
        app[_ROTATION].cancel()
        app[_TRIM].cancel()
        await daemon.residency.close()
        await daemon.supervisor.stop_all(reason="tursid stopped")
        await daemon.gateway.close()
        await daemon.sampler.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


def build_dashboard_app(daemon: Daemon) -> web.Application:
    """The dashboard's own application (loopback only): its page and session routes, the control API's routes the
    page uses behind the session check, and the gateway's routing for the playground."""
    app = web.Application(
        middlewares=[
            problem_middleware,
            guard_middleware(MAX_BODY, loopback_only=True),
            same_origin_middleware(),
            dashboard.session_middleware(),
        ],
        client_max_size=MAX_BODY,
    )
    app[DAEMON] = daemon
    app[HTTP_SETTINGS] = daemon.settings.http
    app[GATEWAY] = daemon.gateway
    app.add_routes(dashboard.routes)
    app.add_routes(system.routes)
    app.add_routes(deployments.routes)
    app.add_routes(artifacts.routes)
    app.add_routes(plan_preview.routes)
    return app


def open_daemon(settings: Settings, hardware: HardwareProfile | None = None) -> Daemon:
    """tursid's shared objects for ``settings.home``: its state opened, nothing started yet (``build_app``'s
    start-up does that). ``serve`` uses it under the instance lock; a test builds the same application in process
    with ``build_app(open_daemon(settings, hardware))``. ``hardware`` defaults to this machine's cached probe."""
    store = StateStore(settings.db_path)
    supervisor = Supervisor(store, settings.logs_dir, grace_s=settings.stop_grace_s)
    history = int(min(600, max(60, SAMPLE_HISTORY_S / max(settings.sample_interval_s, 0.1))))
    sampler = Sampler(store, interval_s=settings.sample_interval_s, history=history)  # the dashboard's charts
    budget = Budget(budget_from(settings.memory_budget))
    sampler.mem_limit = budget.total
    residency = Residency(
        store,
        supervisor,
        sampler,
        ready_timeout_s=settings.ready_timeout_s,
        budget=budget,
        keep_alive=settings.keep_alive,
    )
    secret, supervisor.gateway_sha256 = gateway_secret(settings.home)
    gateway = Gateway(store, residency, secret)
    residency.waker_app = waker_app_factory(gateway, settings.http)
    return Daemon(
        settings=settings,
        store=store,
        supervisor=supervisor,
        sampler=sampler,
        hardware=hardware if hardware is not None else detect_cached(settings.home),
        residency=residency,
        gateway=gateway,
    )


def serve(
    settings: Settings,
    listen: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
    require_token: bool = True,
) -> int:
    settings.ensure_dirs()
    lock = InstanceLock(settings.lock_path)
    lock.acquire()
    try:
        daemon = open_daemon(settings)
        store = daemon.store
        sock = settings.socket_path
        sock.unlink(missing_ok=True)  # stale: we hold the lock, so no live daemon owns it
        app = build_app(daemon, require_token, loopback_only=listen is None or is_loopback_bind(listen[0]))
        log.info("tursid pid=%d listening on unix://%s", os.getpid(), sock)
        asyncio.run(_run(app, sock, settings.stop_grace_s, listen, tls))
        store.close()
        Path(sock).unlink(missing_ok=True)
        return 0
    finally:
        lock.release()


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _run(
    app: web.Application,
    sock: Path,
    grace_s: float,
    listen: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    limits = ConnectionLimits.from_settings(http_settings(app))
    app[DAEMON].residency.limits = limits  # idle ports (wakers) count against the same limits
    runner = runner_for(app, limits, handle_signals=False, access_log=None, shutdown_timeout=grace_s)
    await runner.setup()
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        await web.UnixSite(runner, str(sock)).start()
    finally:
        os.umask(old_umask)
    os.chmod(sock, 0o600)
    if listen is not None:
        await LimitedTCPSite(runner, listen[0], listen[1], limits, ssl_context=tls).start()
        log.info("tursid also listening on %s://%s:%d", "https" if tls else "http", *listen)
    gateway = await _start_gateway(app, limits, grace_s)
    ui = await _start_dashboard(app, limits, grace_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("tursid stopping: draining and stopping workers")
    if gateway is not None:
        await gateway.cleanup()
    if ui is not None:
        await ui.cleanup()
    await runner.cleanup()


async def _start_dashboard(app: web.Application, limits: ConnectionLimits, grace_s: float) -> web.AppRunner | None:
    """The dashboard on TURSI_UI (loopback only); a port in use is a warning, as for the gateway."""
    daemon = app[DAEMON]
    if not gateway_enabled(daemon.settings.ui):
        return None
    host, port = parse_listen(daemon.settings.ui, "TURSI_UI")
    runner = await _serve_beside(build_dashboard_app(daemon), host, port, limits, grace_s, "dashboard")
    if runner is not None:
        daemon.ui_address = (host, port)
        log.info("dashboard on http://%s:%d/ui/ (log in with `tursi ui`)", host, port)
    return runner


async def _start_gateway(app: web.Application, limits: ConnectionLimits, grace_s: float) -> web.AppRunner | None:
    """The gateway on TURSI_GATEWAY; a port in use (another tursid, an Ollama) is a warning, not a failed start."""
    daemon = app[DAEMON]
    if not gateway_enabled(daemon.settings.gateway):
        return None
    host, port = parse_listen(daemon.settings.gateway)
    gw_app = build_gateway_app(daemon.gateway, loopback_only=is_loopback_bind(host))
    gw_app[HTTP_SETTINGS] = daemon.settings.http
    runner = await _serve_beside(gw_app, host, port, limits, grace_s, "gateway")
    if runner is not None:
        log.info("gateway listening on http://%s:%d", host, port)
    return runner


async def _serve_beside(
    side: web.Application, host: str, port: int, limits: ConnectionLimits, grace_s: float, what: str
) -> web.AppRunner | None:
    """``side`` served on its own TCP port beside the control API; None (and a warning) when the port is taken."""
    runner = runner_for(side, limits, handle_signals=False, access_log=None, shutdown_timeout=grace_s)
    await runner.setup()
    try:
        await LimitedTCPSite(runner, host, port, limits).start()
    except OSError as e:
        log.warning("%s not started: cannot listen on %s:%d (%s)", what, host, port, e.strerror)
        await runner.cleanup()
        return None
    return runner
