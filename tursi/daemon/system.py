"""Control API resources: /health, /v1/system, /v1/stats."""

from __future__ import annotations

import os
import platform
import sys

import psutil
from aiohttp import web

from tursi import __version__
from tursi.core.hardware import target_profiles
from tursi.daemon.context import DAEMON
from tursi.http.streaming import EventStream

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__, "pid": os.getpid()})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from tursi.http.openapi import control

    return web.json_response(control())


@routes.get("/v1/system")
async def system(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response(
        {
            "version": __version__,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "system": platform.system(),
            "release": platform.release(),
            "cpu_count_logical": psutil.cpu_count(),
            "cpu_count_physical": psutil.cpu_count(logical=False),
            "mem_total_bytes": psutil.virtual_memory().total,
            "home": str(daemon.settings.home),
            "pid": os.getpid(),
            "schema_version": daemon.store.schema_version,
            "hardware": daemon.hardware.to_dict(),
            "target_profiles": sorted(target_profiles()),
        }
    )


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    sampler = request.app[DAEMON].sampler
    if request.query.get("stream", "") in ("", "0", "false"):
        snap = sampler.latest or await sampler.wait_next(0.0)
        return web.json_response(snap)
    stream = EventStream(request, "ndjson", what="stats")
    await stream.commit()  # at once: the headers do not wait for the first sample
    async with stream:
        last = 0.0
        while True:
            snap = await sampler.wait_next(last)
            last = snap["at"]
            if not await stream.send(snap):
                break  # the client went away, or stopped reading
    return await stream.finish()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """tursid's own metrics: deployments by state and restarts, in the Prometheus text format."""
    daemon = request.app[DAEMON]
    deps = daemon.store.list_deployments(all=True)
    states = ("starting", "running", "restarting", "exited", "failed")
    lines = ["# HELP tursi_deployments Deployments known to tursid, by state.", "# TYPE tursi_deployments gauge"]
    lines += [f'tursi_deployments{{state="{s}"}} {sum(d.status == s for d in deps)}' for s in states]
    lines += ["# HELP tursi_restarts_total Restarts made by restart policies.", "# TYPE tursi_restarts_total counter"]
    lines += [f'tursi_restarts_total{{deployment="{d.name}"}} {d.restart_count}' for d in deps]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
