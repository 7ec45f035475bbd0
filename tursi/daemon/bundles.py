"""Control API: build an artifact for a target, export it as a `.tursi` bundle, import (load/push) one."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from converters import cache
from tursi import failpoints
from tursi.daemon.artifacts import find_artifact
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.deployments import ensure_artifact
from tursi.errors import BundleTooLarge, DiskFull, InvalidSpec, TargetMismatch, TursiError, problem_for
from tursi.fit import misfits
from tursi.guards import read_json
from tursi.hardware import load_target
from tursi.plan import NAME_RE, Options, make_plan
from tursi.refs import resolve

if TYPE_CHECKING:
    from tursi import bundle  # imported where used: tarfile stays out of an idle tursid

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def caps(daemon: Daemon) -> bundle.Caps:
    from tursi import bundle

    s = daemon.settings
    return bundle.Caps(total_bytes=s.max_bundle_bytes, file_bytes=s.max_bundle_bytes)


@routes.post("/v1/artifacts/build")
async def build(request: web.Request) -> web.StreamResponse:
    """Convert MODEL for a target profile into the cache (no deployment); NDJSON progress, then `built`."""
    daemon = request.app[DAEMON]
    body = await read_json(request)

    def parse() -> tuple[Any, Any, str]:
        model = body.get("model")
        if not isinstance(model, str):
            raise InvalidSpec("'model' is required", param="model")
        opts = Options.parse(body)
        ref = resolve(model, revision=opts.revision, allow_pickle=opts.allow_pickle)
        hw = load_target(opts.target) if opts.target else daemon.hardware
        return ref, make_plan(ref, opts, hw), hw.name

    ref, plan, target = await asyncio.get_running_loop().run_in_executor(None, parse)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)

    async def emit(event: dict[str, Any]) -> None:
        try:
            await resp.write((json.dumps(event) + "\n").encode())
        except (ConnectionResetError, RuntimeError):
            pass

    try:
        key, manifest = await ensure_artifact(daemon, ref, plan, emit)
        name = _default_name(ref.display)
        await emit({"event": "built", "key": key, "name": name, "target": target, "manifest": manifest})
    except Exception as e:
        if not isinstance(e, TursiError):
            log.exception("build failed")
        await emit({"event": "error", **problem_for(e)})
    await resp.write_eof()
    return resp


def _default_name(display: str) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(display).name.lower()).strip("-._")[:64]
    return name if NAME_RE.match(name) else "model"


def _target_profile(daemon: Daemon, manifest: dict[str, Any]) -> dict[str, Any]:
    wanted = manifest.get("plan", {}).get("params", {}).get("hardware_target")
    if wanted and wanted != "detected":
        return load_target(wanted).to_dict()
    profile = daemon.hardware.to_dict()
    profile["description"] = "the machine that built it"
    return profile


@routes.get("/v1/artifacts/{key}/bundle")
async def export(request: web.Request) -> web.StreamResponse:
    """The artifact as a `.tursi` tar, streamed with its length known up front."""
    from tursi import bundle

    daemon = request.app[DAEMON]
    art = find_artifact(daemon, request.match_info["key"])
    name = request.query.get("name") or _default_name(str(art["source"] or art["key"][:12]))
    if not NAME_RE.match(name):
        raise InvalidSpec("the bundle name must match [a-z0-9][a-z0-9._-]{0,63}", param="name")
    directory = daemon.settings.artifacts_dir / art["key"]
    manifest = cache.lookup(daemon.settings.artifacts_dir, art["key"]) or {}
    loop = asyncio.get_running_loop()
    files = await loop.run_in_executor(None, bundle.describe, directory)
    index = bundle.make_index(art["key"], name, _target_profile(daemon, manifest), files)
    writer = bundle.BundleWriter(directory, index)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "Content-Length": str(writer.length),
            "Content-Disposition": f'attachment; filename="{name}.tursi"',
        }
    )
    await resp.prepare(request)
    chunks = writer.chunks()
    while (chunk := await loop.run_in_executor(None, next, chunks, None)) is not None:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@routes.post("/v1/artifacts/load")
async def load(request: web.Request) -> web.Response:
    """Import a bundle: spool it (capped), verify all of it, check it fits, then unpack and publish."""
    from tursi import bundle

    daemon = request.app[DAEMON]
    force = request.query.get("force", "") not in ("", "0", "false")
    limit = caps(daemon)
    ceiling = limit.total_bytes + bundle.MAX_INDEX_BYTES + (limit.files + 2) * 3 * 512
    if request.content_length is not None and request.content_length > ceiling:
        raise BundleTooLarge(f"the bundle is {request.content_length} bytes; the cap is {limit.total_bytes}")
    root = daemon.settings.artifacts_dir
    root.mkdir(parents=True, exist_ok=True)
    fd, spool_name = tempfile.mkstemp(prefix=".tmp-upload-", dir=root)  # removed at start if we die here
    spool = Path(spool_name)
    loop = asyncio.get_running_loop()
    try:
        with os.fdopen(fd, "wb") as fh:
            received = 0
            async for chunk in request.content.iter_chunked(bundle.CHUNK):
                received += len(chunk)
                if received > ceiling:
                    raise BundleTooLarge(f"the upload passed the cap of {limit.total_bytes} bytes")
                await loop.run_in_executor(None, fh.write, chunk)
        info = await loop.run_in_executor(None, bundle.verify, spool, limit)
        reasons = misfits(info.target, daemon.hardware, info.size_bytes)
        if reasons and not force:
            raise TargetMismatch("; ".join(reasons), target=info.target.get("name"), hint="--force loads it anyway")
        present = cache.lookup(root, info.key) is not None
        if not present:
            await loop.run_in_executor(None, _unpack, spool, info, root)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(f"no space left in {root} for the bundle", hint="tursi prune frees unused artifacts") from e
        raise
    finally:
        spool.unlink(missing_ok=True)
    manifest = info.manifest
    plan = manifest["plan"]
    daemon.store.record_artifact(
        info.key,
        str(root / info.key),
        str(manifest.get("source", {}).get("reference", info.name)),
        plan["format"],
        str(manifest.get("quantization") or plan.get("quantization")),
        info.size_bytes,
    )
    daemon.store.add_event(None, "loaded", f"bundle {info.name} -> {info.key[:12]}")
    return web.json_response(
        {
            "key": info.key,
            "name": info.name,
            "target": info.target.get("name"),
            "format": plan["format"],
            "quantization": manifest.get("quantization") or plan.get("quantization"),
            "size_bytes": info.size_bytes,
            "already_present": present,
            "warnings": reasons,
        }
    )


def _unpack(spool: Path, info: bundle.BundleInfo, root: Path) -> None:
    from tursi import bundle, onnx_external

    staging = cache.make_staging(root, info.key)
    try:
        bundle.extract(spool, info, staging)
        onnx_external.check_folder(staging)  # no ONNX tensor may read from outside the artifact
        failpoints.hit("load.before_publish")
        cache.publish(staging, root, info.key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
