"""Control API resource: /v1/deployments (up, ps, inspect, down, logs)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from converters import cache
from tursi.core import failpoints
from tursi.core.errors import (
    ConversionFailed,
    DeploymentExists,
    DeploymentNotFound,
    InvalidSpec,
    PortInUse,
    TursiError,
    problem_for,
)
from tursi.core.hardware import load_target
from tursi.core.plan import NAME_RE, Options, Plan, make_plan, tool_versions
from tursi.core.refs import ModelRef, resolve
from tursi.daemon.artifacts import KEY_PREFIX
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.conversion import run_conversion
from tursi.daemon.logfiles import parse_since, read_lines
from tursi.daemon.logfiles import remove_all as remove_logs
from tursi.daemon.memory import release_free_memory
from tursi.daemon.state import Deployment
from tursi.daemon.supervisor import log_path
from tursi.http.apikeys import digest as key_digest
from tursi.http.guards import is_loopback_bind, read_json

log = logging.getLogger(__name__)
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


def _with_mem(dep: Deployment) -> dict[str, Any]:
    d = describe(dep)
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
    return web.json_response([_with_mem(d) for d in daemon.store.list_deployments(all=show_all)])


@routes.get("/v1/deployments/{name}")
async def inspect_deployment(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    dep = _get(daemon, request.match_info["name"])
    body = _with_mem(dep)
    body["manifest"] = cache.lookup(daemon.settings.artifacts_dir, dep.artifact_key) if dep.artifact_key else None
    body["events"] = daemon.store.events(dep.name, limit=50)
    return web.json_response(body)


def _get(daemon: Daemon, name: str) -> Deployment:
    dep = daemon.store.get_deployment(name)
    if dep is None:
        raise DeploymentNotFound(f"no deployment named '{name}'", hint="tursi ps -a lists them")
    return dep


@routes.delete("/v1/deployments/{name}")
async def remove_deployment(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    dep = _get(daemon, request.match_info["name"])
    await _remove(daemon, dep)
    return web.json_response({"removed": [dep.name]})


@routes.delete("/v1/deployments")
async def remove_all(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    deps = daemon.store.list_deployments(all=True)
    await asyncio.gather(*(_remove(daemon, d) for d in deps))
    release_free_memory()
    return web.json_response({"removed": [d.name for d in deps]})


async def _remove(daemon: Daemon, dep: Deployment) -> None:
    await daemon.supervisor.stop(dep.name, reason="removed by down")
    daemon.store.remove_deployment(dep.name)
    daemon.store.add_event(dep.name, "removed")
    remove_logs(log_path(daemon.settings.logs_dir, dep.name), daemon.settings.log_files)


# -- up ----------------------------------------------------------------------------------------


@dataclass
class UpRequest:
    opts: Options
    name: str
    host: str
    port: int
    ref: ModelRef | None = None  # a model to convert (or find in the cache)
    plan: Plan | None = None
    built: tuple[str, dict[str, Any]] | None = None  # (key, manifest): a built or loaded artifact, used as is


def _parse_up(daemon: Daemon, body: dict[str, Any]) -> UpRequest:
    model = body.get("model")
    if not isinstance(model, str):
        raise InvalidSpec("'model' is required: an alias, a folder, a file, a hub id or an artifact key", param="model")
    opts = Options.parse(body)
    host = body.get("host") or "127.0.0.1"
    if not isinstance(host, str):
        raise InvalidSpec("'host' must be an address", param="host")
    built = find_built(daemon, model)
    if built is not None:
        for option in ("target", "bits", "calibration", "min_quality", "revision"):
            if body.get(option) is not None:
                raise InvalidSpec(f"--{option.replace('_', '-')} applies to conversion; {model} is built", param=option)
        source = built[1].get("source", {})
        display = str(source.get("reference") or built[0][:12])
        name = _pick_name(daemon, body.get("name"), Path(display).name)
        return UpRequest(opts, name, host, _pick_port(daemon, body.get("port"), host), built=built)
    ref = resolve(model, revision=opts.revision, allow_pickle=opts.allow_pickle)
    hw = load_target(opts.target) if opts.target else daemon.hardware
    plan = make_plan(ref, opts, hw)
    name = _pick_name(daemon, body.get("name"), ref.display)
    port = _pick_port(daemon, body.get("port"), host)
    return UpRequest(opts, name, host, port, ref=ref, plan=plan)


def find_built(daemon: Daemon, model: str) -> tuple[str, dict[str, Any]] | None:
    """(key, manifest) when ``model`` is the key (or a unique prefix) of a cached artifact and not a path."""
    if not KEY_PREFIX.match(model) or Path(model).exists():
        return None
    root = daemon.settings.artifacts_dir
    keys = [e.name for e in root.iterdir() if e.name.startswith(model)] if root.is_dir() else []
    if len(keys) > 1:
        raise InvalidSpec(f"{model} matches {len(keys)} artifacts: give more digits", param="model")
    manifest = cache.lookup(root, keys[0]) if keys else None
    return (keys[0], manifest) if manifest is not None else None


def _pick_name(daemon: Daemon, wanted: Any, display: str) -> str:
    if wanted is not None:
        if not isinstance(wanted, str) or not NAME_RE.match(wanted):
            raise InvalidSpec("--name must match [a-z0-9][a-z0-9._-]{0,63}", param="name")
        if _name_taken(daemon, wanted):
            raise DeploymentExists(f"the name '{wanted}' is already in use", hint=f"tursi down {wanted}")
        return wanted
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in display.lower()).strip("-._")[:60] or "model"
    name, n = base, 1
    while _name_taken(daemon, name):
        n += 1
        name = f"{base}-{n}"
    return name


def _name_taken(daemon: Daemon, name: str) -> bool:
    """A deployment whose conversion failed (no artifact, never started) is only a record: the next up replaces it."""
    if name in daemon.reserved_names:
        return True
    dep = daemon.store.get_deployment(name)
    return dep is not None and not _failed_before_start(dep)


def _failed_before_start(dep: Deployment) -> bool:
    return dep.status == "failed" and not dep.artifact_key


def _pick_port(daemon: Daemon, wanted: Any, host: str) -> int:
    taken = daemon.store.ports_in_use() | daemon.reserved_ports
    if wanted is None:
        while True:
            port = _bind_probe(host, 0)
            if port not in taken:
                return port
    if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= 65535:
        raise InvalidSpec("--port must be an integer from 1 to 65535", param="port")
    if wanted in taken:
        raise PortInUse(f"port {wanted} is used by another deployment", hint="tursi ps")
    _bind_probe(host, wanted)
    return wanted


def _bind_probe(host: str, port: int) -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the worker binds the same way
            s.bind((host, port))
            return int(s.getsockname()[1])
    except OSError as e:
        raise PortInUse(f"cannot bind {host}:{port}: {e.strerror}") from e


@routes.post("/v1/deployments")
async def create_deployment(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    body = await read_json(request)
    # Everything that can fail fast does so before the 200 is committed, with a real status code.
    up = await asyncio.get_running_loop().run_in_executor(None, _parse_up, daemon, body)
    _reserve(daemon, up, body)
    name, port, opts = up.name, up.port, up.opts
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        await resp.prepare(request)
    except BaseException:  # the client went away before anything started: the name and port are free again
        daemon.reserved_names.discard(name)
        daemon.reserved_ports.discard(port)
        raise

    async def emit(event: dict[str, Any]) -> None:
        try:
            await resp.write((json.dumps(event) + "\n").encode())
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away; the deployment carries on

    try:
        dep = await _bring_up(daemon, up, emit)
        ready: dict[str, Any] = {"event": "ready", "deployment": describe(dep)}
        if body.get("api_key") == "auto":
            ready["api_key"] = opts.api_key  # generated: shown this once, stored only as a hash
        await emit(ready)
    except Exception as e:  # streamed as a problem event: the status line is already sent
        if not isinstance(e, TursiError):
            log.exception("up failed")
        await emit({"event": "error", **problem_for(e)})
    finally:
        daemon.reserved_names.discard(name)
        daemon.reserved_ports.discard(port)
        release_free_memory()  # conversion events and the plan are garbage now
    await resp.write_eof()
    return resp


def _reserve(daemon: Daemon, up: UpRequest, body: dict[str, Any]) -> None:
    """Claim the name and port. This runs on the event loop with no await from check to claim: of two `up` that
    were parsed at the same time (in threads), the second gets 409 here instead of converting too and then failing
    at the insert. A name or port that was picked, not asked for, is picked again."""
    if _name_taken(daemon, up.name):
        if body.get("name") is not None:
            raise DeploymentExists(f"the name '{up.name}' is already in use", hint=f"tursi down {up.name}")
        up.name = _pick_name(daemon, None, up.name)
    if up.port in daemon.store.ports_in_use() | daemon.reserved_ports:
        if body.get("port") is not None:
            raise PortInUse(f"port {up.port} is used by another deployment", hint="tursi ps")
        up.port = _pick_port(daemon, None, up.host)
    daemon.reserved_names.add(up.name)
    daemon.reserved_ports.add(up.port)


async def ensure_artifact(daemon: Daemon, ref: ModelRef, plan: Plan, emit: Any) -> tuple[str, dict[str, Any]]:
    """The cached artifact for (source, plan, tools), converting first when there is none."""
    settings = daemon.settings
    await emit({"event": "status", "message": f"resolved {ref.reference} -> {ref.path}"})
    digest = await asyncio.get_running_loop().run_in_executor(None, ref.digest)
    versions = tool_versions()
    key = cache.artifact_key(digest, plan.to_dict(), versions)
    manifest = cache.lookup(settings.artifacts_dir, key)
    if manifest is not None:
        await emit({"event": "cached", "key": key, "message": f"using cached artifact {key[:12]}"})
    else:
        manifest = await _convert(daemon, ref, plan, digest, versions, key, emit)
    daemon.store.record_artifact(
        key,
        str(settings.artifacts_dir / key),
        ref.reference,
        plan.format,
        plan.quantization,
        int(manifest.get("size_bytes", 0)),
    )
    return key, manifest


async def _bring_up(daemon: Daemon, up: UpRequest, emit: Any) -> Deployment:
    settings = daemon.settings
    name, host, port, opts = up.name, up.host, up.port, up.opts
    if up.built is not None:
        key, manifest = up.built
        await emit({"event": "cached", "key": key, "message": f"using built artifact {key[:12]} (no conversion)"})
        source = manifest.get("source", {})
        reference, source_path = str(source.get("reference", key[:12])), str(source.get("path", ""))
    else:
        if up.ref is None or up.plan is None:
            raise InvalidSpec("nothing to deploy", param="model")
        try:
            key, manifest = await ensure_artifact(daemon, up.ref, up.plan, emit)
        except ConversionFailed as e:
            _record_failed_conversion(daemon, up, up.ref, up.plan, e.detail)
            raise
        reference, source_path = up.ref.reference, str(up.ref.path)
    plan = manifest["plan"]
    artifact = settings.artifacts_dir / key
    dep = Deployment(
        name=name,
        model=reference,
        source=source_path,
        task=plan["task"],
        format=plan["format"],
        quantization=str(manifest.get("quantization") or plan["quantization"]),  # after any quality fallback
        artifact_key=key,
        artifact_path=str(artifact),
        host=host,
        port=port,
        status="created",
        created_at=time.time(),
        options={
            "threads": opts.threads or daemon.hardware.physical_cores,
            "ctx_size": opts.ctx_size,
            "max_queue": opts.max_queue,
            "max_batch": opts.max_batch,
            "batch_wait_ms": opts.batch_wait_ms,
            "rate_limit": opts.rate_limit,
            "restart": opts.restart,
            "restart_on_unhealthy": opts.restart_on_unhealthy,
            "api_key_sha256": key_digest(opts.api_key) if opts.api_key else None,
            **opts.health,
            "bits": opts.bits,
            "quantization_scheme": opts.quantization,
        },
    )
    failpoints.hit("up.before_commit")
    _replace_failed_record(daemon, name)
    daemon.store.add_deployment(dep)
    remove_logs(log_path(settings.logs_dir, name), settings.log_files)
    daemon.supervisor.lifecycle(name, "created", f"model={reference} artifact={key[:12]}")
    failpoints.hit("up.after_commit")
    await emit({"event": "status", "message": f"starting worker on {dep.endpoint}"})
    await daemon.supervisor.start(dep)
    await daemon.supervisor.wait_ready(dep, settings.ready_timeout_s)
    return daemon.store.get_deployment(name) or dep


def _record_failed_conversion(daemon: Daemon, up: UpRequest, ref: ModelRef, plan: Plan, detail: str) -> None:
    """Leave the attempt in `ps -a` as failed with its reason (like a container that could not start)."""
    now = time.time()
    _replace_failed_record(daemon, up.name)
    daemon.store.add_deployment(
        Deployment(
            name=up.name,
            model=ref.reference,
            source=str(ref.path),
            task=plan.task,
            format=plan.format,
            quantization=plan.quantization,
            artifact_key="",
            artifact_path="",
            host=up.host,
            port=up.port,
            status="failed",
            created_at=now,
            finished_at=now,
            reason=f"conversion failed: {detail}",
            options={"restart": "no"},
        )
    )
    daemon.supervisor.lifecycle(up.name, "failed", f"conversion failed: {detail}")


def _replace_failed_record(daemon: Daemon, name: str) -> None:
    old = daemon.store.get_deployment(name)
    if old is not None and _failed_before_start(old):
        daemon.store.remove_deployment(name)


async def _convert(
    daemon: Daemon, ref: ModelRef, plan: Plan, digest: str, versions: dict[str, str], key: str, emit: Any
) -> dict[str, Any]:
    spec = {
        "source": str(ref.path),
        "key": key,
        "artifacts_dir": str(daemon.settings.artifacts_dir),
        "plan": plan.to_dict(),
        "manifest": {
            "source": {
                "reference": ref.reference,
                "path": str(ref.path),
                "digest": digest,
                "size_bytes": ref.size_bytes(),
            },
            "plan": plan.to_dict(),
            "tools": versions,
        },
    }
    await emit({"event": "status", "message": f"converting {ref.reference} to {plan.format} {plan.quantization}"})
    done: dict[str, Any] = {}
    conv_log = daemon.settings.logs_dir / f"convert-{key[:12]}.log"
    async for event in run_conversion(spec, conv_log):
        if event["event"] == "done":
            done = event["manifest"]
        else:
            await emit(event)
    daemon.store.add_event(None, "converted", f"{ref.reference} -> {key[:12]} in {done.get('conversion_s')}s")
    return done


# -- logs --------------------------------------------------------------------------------------


@routes.get("/v1/deployments/{name}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON]
    dep = _get(daemon, request.match_info["name"])
    try:
        tail = int(request.query.get("tail", "-1"))
    except ValueError:
        raise InvalidSpec("'tail' must be an integer", param="tail") from None
    since = parse_since(request.query["since"], time.time()) if request.query.get("since") else None
    stamps = request.query.get("timestamps", "") not in ("", "0", "false")
    follow = request.query.get("follow", "") not in ("", "0", "false")
    path = log_path(daemon.settings.logs_dir, dep.name)
    lines = read_lines(path, keep=daemon.settings.log_files, tail=tail, since=since, timestamps=stamps)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    if lines:
        await resp.write(("\n".join(lines) + "\n").encode())
    if follow:
        await _follow(daemon, dep.name, path, resp)
    await resp.write_eof()
    return resp


async def _follow(daemon: Daemon, name: str, path: Any, resp: web.StreamResponse) -> None:
    offset = path.stat().st_size if path.exists() else 0
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < offset:  # rotated (copytruncate): start over at the top of the fresh file
            offset = 0
        if size > offset:
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read(size - offset)
            offset = size
            try:
                await resp.write(chunk)
            except (ConnectionResetError, RuntimeError):
                return
        dep = daemon.store.get_deployment(name)
        if dep is None or dep.status not in ("starting", "running"):
            if size == offset:
                return
        await asyncio.sleep(0.25)
