"""Control API resource: /v1/deployments (up, ps, inspect, down, logs)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import psutil
from aiohttp import web

from converters import cache
from tursi.core.errors import DeploymentNotRunning, InvalidSpec
from tursi.core.spec import DeploymentSpec
from tursi.daemon import deploy_service, placement, registry_routes
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.log_follow import follow as follow_log
from tursi.daemon.logfiles import log_path, parse_since, read_lines
from tursi.daemon.memory import release_free_memory
from tursi.daemon.state import ACTIVE, Deployment
from tursi.http.guards import is_loopback_bind, read_json
from tursi.http.streaming import EventStream
from tursi.registry.reference import is_reference, parse_reference

log = logging.getLogger(__name__)
SHOWN = (*ACTIVE, "idle")  # what `ps` lists without --all: loaded, or unloaded and ready to load
routes = web.RouteTableDef()


def describe(dep: Deployment) -> dict[str, Any]:
    """A deployment as the API shows it: its record, its endpoint and what the user should be warned about."""
    d = dep.to_dict()
    d["warnings"] = []
    if not is_loopback_bind(dep.host) and not dep.options.get("api_key_sha256"):
        d["warnings"].append(
            f"{dep.name} listens on {dep.host or '0.0.0.0'}:{dep.port} without an API key: anyone who can reach "
            "this machine can use it (tursi up --api-key auto)"
        )
    return d


def _with_mem(dep: Deployment, daemon: Daemon) -> dict[str, Any]:
    d = describe(dep)
    budget = daemon.residency.budget
    d["mem_need_bytes"] = budget.need(dep) if dep.artifact_path else None  # measured once it has run, else estimated
    d["mem_estimate_bytes"] = budget.estimate(dep) if dep.artifact_path else None
    d["mem_budget_bytes"] = budget.total
    d["pinned"] = bool(dep.options.get("pin"))
    d["mem_bytes"] = None
    if dep.pid and dep.status in ("starting", "running"):
        try:
            d["mem_bytes"] = psutil.Process(dep.pid).memory_info().rss
        except psutil.Error:
            pass
    return d


@routes.get("/v1/deployments")
async def list_deployments(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    show_all = request.query.get("all", "") not in ("", "0", "false")
    deps = [d for d in daemon.store.list_deployments(all=True) if show_all or d.status in SHOWN]
    return web.json_response([_with_mem(d, daemon) for d in deps])


@routes.post("/v1/deployments/{name}/stop")
async def stop_deployment(request: web.Request) -> web.Response:
    """Unload: the worker stops, the deployment stays (idle) with its port; a request loads it again."""
    daemon = request.app[DAEMON]
    dep = deploy_service.find(daemon, request.match_info["name"])
    if dep.status not in (*ACTIVE, "idle"):
        raise DeploymentNotRunning(f"deployment {dep.name} is {dep.status}", hint=f"tursi start {dep.name}")
    for each in (dep, *deploy_service.replicas_of(daemon, dep.name)):
        await daemon.residency.unload(each.name, "stopped by tursi stop")
    return web.json_response(describe(deploy_service.find(daemon, dep.name)))


@routes.post("/v1/deployments/{name}/start")
async def start_deployment(request: web.Request) -> web.Response:
    """Load: an idle, exited or failed deployment's worker starts; answers once it is ready."""
    daemon = request.app[DAEMON]
    dep = deploy_service.find(daemon, request.match_info["name"])
    took = 0.0
    for each in (dep, *deploy_service.replicas_of(daemon, dep.name)):
        if each.status in ("exited", "failed") and each.artifact_key:
            daemon.store.update_deployment(each.name, status="idle")
        took += await daemon.residency.ensure_loaded(each.name)
    return web.json_response({**describe(deploy_service.find(daemon, dep.name)), "load_seconds": round(took, 3)})


@routes.get("/v1/deployments/{name}")
async def inspect_deployment(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    dep = deploy_service.find(daemon, request.match_info["name"])
    body = _with_mem(dep, daemon)
    body["manifest"] = cache.lookup(daemon.settings.artifacts_dir, dep.artifact_key) if dep.artifact_key else None
    body["events"] = daemon.store.events(dep.name, limit=50)
    return web.json_response(body)


@routes.delete("/v1/deployments/{name}")
async def remove_deployment(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    dep = deploy_service.find(daemon, request.match_info["name"])
    await deploy_service.remove(daemon, dep)
    return web.json_response({"removed": [dep.name]})


@routes.delete("/v1/deployments")
async def remove_all(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"removed": await deploy_service.remove_all(daemon)})


# -- up ----------------------------------------------------------------------------------------


@routes.post("/v1/deployments")
async def create_deployment(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    body = await read_json(request)
    # Everything that can fail fast does so before the 200 is committed, with a real status code.
    spec = DeploymentSpec.parse(body)
    stream = EventStream(request, "ndjson", what="up")  # a client that goes away: the deployment carries on
    async with stream:  # once the first event is out, a failure is streamed as a problem event
        if is_reference(spec.model):  # a registry reference: this daemon pulls it (with progress), then deploys it
            ref = parse_reference(spec.model)
            pulled = await registry_routes.pull_into_cache(daemon, ref, body.get("registry_auth"), stream.send)
            spec = replace(spec, model=pulled["key"] or pulled["gguf"])
        up = await asyncio.get_running_loop().run_in_executor(None, deploy_service.plan_up, daemon, spec)
        up.name, up.port = placement.claim(
            daemon,
            up.name,
            up.port,
            up.host,
            name_asked=body.get("name") is not None,
            port_asked=body.get("port") is not None,
        )
        name, port, opts = up.name, up.port, up.opts
        try:
            dep = await deploy_service.bring_up(daemon, up, stream.send)
            await deploy_service.add_replicas(daemon, dep, opts.replicas, stream.send)
            ready: dict[str, Any] = {"event": "ready", "deployment": describe(dep)}
            if body.get("api_key") == "auto":
                ready["api_key"] = opts.api_key  # generated: shown this once, stored only as a hash
            await stream.send(ready)
        finally:  # the name and port are free again, whether up worked, failed or its client went away
            placement.release(daemon, name, port)
            release_free_memory()  # conversion events and the plan are garbage now
    return await stream.finish()


# -- logs --------------------------------------------------------------------------------------


@routes.get("/v1/deployments/{name}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    dep = deploy_service.find(daemon, request.match_info["name"])
    try:
        tail = int(request.query.get("tail", "-1"))
    except ValueError:
        raise InvalidSpec("'tail' must be an integer", param="tail") from None
    since = parse_since(request.query["since"], time.time()) if request.query.get("since") else None
    stamps = request.query.get("timestamps", "") not in ("", "0", "false")
    follow = request.query.get("follow", "") not in ("", "0", "false")
    path = log_path(daemon.settings.logs_dir, dep.name)
    lines = read_lines(path, keep=daemon.settings.log_files, tail=tail, since=since, timestamps=stamps)
    stream = EventStream(request, "text", what="logs")
    await stream.commit()  # at once: a follower of a quiet log gets its headers before the next line
    async with stream:
        if lines:
            await stream.send_bytes(("\n".join(lines) + "\n").encode())
        if follow:
            await follow_log(daemon.store, dep.name, path, stream.send_bytes)
    return await stream.finish()
