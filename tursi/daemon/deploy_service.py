"""`up` and `down`, decided: what to deploy (a built artifact, or a model resolved and planned), under which name
and port, the artifact (cached or converted), the record, the worker started; and removal. The handlers in
``deployments.py`` parse requests and answer; they call these."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converters import cache
from tursi.core import failpoints
from tursi.core.errors import ConversionFailed, DeploymentNotFound, InvalidSpec
from tursi.core.hardware import load_target
from tursi.core.names import REPLICA, is_replica
from tursi.core.plan import Plan, make_plan
from tursi.core.refs import ModelRef, resolve
from tursi.core.spec import DeploymentSpec
from tursi.daemon.artifacts import KEY_PREFIX
from tursi.daemon.context import Daemon
from tursi.daemon.logfiles import log_path
from tursi.daemon.logfiles import remove_all as remove_logs
from tursi.daemon.memory import release_free_memory
from tursi.daemon.placement import failed_before_start, pick_name, pick_port
from tursi.daemon.provision import Emit, ensure_artifact
from tursi.daemon.state import Deployment
from tursi.http.apikeys import digest as key_digest


@dataclass
class UpRequest:
    opts: DeploymentSpec
    name: str
    host: str
    port: int
    ref: ModelRef | None = None  # a model to convert (or find in the cache)
    plan: Plan | None = None
    built: tuple[str, dict[str, Any]] | None = None  # (key, manifest): a built or loaded artifact, used as is


def plan_up(daemon: Daemon, opts: DeploymentSpec) -> UpRequest:
    """What `up` will deploy, named and placed: a built artifact as is, or a model resolved and planned for the
    target. Blocking (resolving may download): run it off the event loop."""
    model, host = opts.model, opts.host
    built = find_built(daemon, model)
    if built is not None:
        for option in opts.changed("conversion"):
            raise InvalidSpec(f"--{option.replace('_', '-')} applies to conversion; {model} is built", param=option)
        source = built[1].get("source", {})
        display = str(source.get("reference") or built[0][:12])
        name = pick_name(daemon, opts.name, Path(display).name)
        return UpRequest(opts, name, host, pick_port(daemon, opts.port, host), built=built)
    ref = resolve(model, revision=opts.revision, allow_pickle=opts.allow_pickle)
    hw = load_target(opts.target) if opts.target else daemon.hardware
    plan = make_plan(ref, opts, hw)
    name = pick_name(daemon, opts.name, ref.display)
    port = pick_port(daemon, opts.port, host)
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


async def bring_up(daemon: Daemon, up: UpRequest, emit: Emit) -> Deployment:
    """The artifact (built, cached or converted now), the deployment recorded, its worker started and ready."""
    settings = daemon.settings
    name, host, port, opts = up.name, up.host, up.port, up.opts
    key, manifest, reference, source_path = await _artifact(daemon, up, emit)
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
        options=replace(opts, threads=opts.threads or daemon.hardware.physical_cores).stored_options(
            api_key_sha256=key_digest(opts.api_key) if opts.api_key else None
        ),
    )
    async with daemon.residency.admission(dep):  # 503 insufficient_memory here leaves nothing recorded
        failpoints.hit("up.before_commit")
        _replace_failed_record(daemon, name)
        daemon.store.add_deployment(dep)
        remove_logs(log_path(settings.logs_dir, name), settings.log_files)
        daemon.supervisor.lifecycle(name, "created", f"model={reference} artifact={key[:12]}")
        failpoints.hit("up.after_commit")
        await emit({"event": "status", "message": f"starting worker on {dep.endpoint}"})
        await daemon.supervisor.start(dep)
        await daemon.supervisor.wait_ready(dep, settings.ready_timeout_s)
    daemon.residency.touch(name)
    return daemon.store.get_deployment(name) or dep


def replicas_of(daemon: Daemon, name: str) -> list[Deployment]:
    """The extra replicas of deployment ``name`` (not itself), in order."""
    found = [d for d in daemon.store.list_deployments(all=True) if d.name.startswith(name + REPLICA)]
    return sorted(
        found, key=lambda d: int(d.name.rsplit(REPLICA, 1)[1]) if d.name.rsplit(REPLICA, 1)[1].isdigit() else 0
    )


async def add_replicas(daemon: Daemon, primary: Deployment, count: int, emit: Emit) -> None:
    """Replicas 2..count of ``primary``: same artifact and options, each on a free loopback port."""
    for k in range(2, count + 1):
        port = pick_port(daemon, None, "127.0.0.1")
        daemon.reserved_ports.add(port)
        try:
            dep = replace(
                primary, name=f"{primary.name}{REPLICA}{k}", host="127.0.0.1", port=port, status="created",
                created_at=time.time(), pid=None, pid_started_at=None, exit_code=None, reason=None,
                started_at=None, finished_at=None, restart_count=0, health=None,
                options={**primary.options, "replica_of": primary.name},
            )  # fmt: skip
            async with daemon.residency.admission(dep):
                daemon.store.add_deployment(dep)
                daemon.supervisor.lifecycle(dep.name, "created", f"replica {k} of {count} of {primary.name}")
                await emit({"event": "status", "message": f"starting replica {k} of {count} on {dep.endpoint}"})
                await daemon.supervisor.start(dep)
                await daemon.supervisor.wait_ready(dep, daemon.settings.ready_timeout_s)
            daemon.residency.touch(dep.name)
        finally:
            daemon.reserved_ports.discard(port)


async def _artifact(daemon: Daemon, up: UpRequest, emit: Emit) -> tuple[str, dict[str, Any], str, str]:
    """(key, manifest, model reference, source path): the built artifact, else the cached or converted one. A
    conversion that fails is recorded as a failed deployment before the error goes on."""
    if up.built is not None:
        key, manifest = up.built
        await emit({"event": "cached", "key": key, "message": f"using built artifact {key[:12]} (no conversion)"})
        source = manifest.get("source", {})
        return key, manifest, str(source.get("reference", key[:12])), str(source.get("path", ""))
    if up.ref is None or up.plan is None:
        raise InvalidSpec("nothing to deploy", param="model")
    try:
        key, manifest = await ensure_artifact(daemon, up.ref, up.plan, emit)
    except ConversionFailed as e:
        _record_failed_conversion(daemon, up, up.ref, up.plan, e.detail)
        raise
    return key, manifest, up.ref.reference, str(up.ref.path)


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
    if old is not None and failed_before_start(old):
        daemon.store.remove_deployment(name)


def find(daemon: Daemon, name: str) -> Deployment:
    """The deployment called ``name``; 404 when there is none."""
    dep = daemon.store.get_deployment(name)
    if dep is None:
        raise DeploymentNotFound(f"no deployment named '{name}'", hint="tursi ps -a lists them")
    return dep


async def remove_all(daemon: Daemon) -> list[str]:
    """`down --all`: every deployment removed at once; their names."""
    deps = daemon.store.list_deployments(all=True)
    await asyncio.gather(*(remove(daemon, d) for d in deps if not is_replica(d.name)))  # replicas go with theirs
    release_free_memory()
    return [d.name for d in deps]


async def remove(daemon: Daemon, dep: Deployment) -> None:
    """`down`: stop its worker, forget it, delete its logs; its replicas go with it."""
    for replica in replicas_of(daemon, dep.name):
        await remove(daemon, replica)
    await daemon.residency.forget(dep.name)
    await daemon.supervisor.stop(dep.name, reason="removed by down")
    daemon.store.remove_deployment(dep.name)
    daemon.store.add_event(dep.name, "removed")
    remove_logs(log_path(daemon.settings.logs_dir, dep.name), daemon.settings.log_files)
