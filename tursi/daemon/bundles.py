"""Control API: build an artifact for a target, export it as a `.tursi` bundle, import (load/push) one."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from converters import cache
from tursi.core import failpoints
from tursi.core.errors import (
    ArtifactConflict,
    BundleTooLarge,
    DiskFull,
    InvalidSpec,
    TargetMismatch,
    TursiError,
    UnsafeBundle,
    UnsupportedEncoding,
    problem_for,
)
from tursi.core.fit import misfits
from tursi.core.hardware import load_target
from tursi.core.plan import NAME_RE, Options, make_plan
from tursi.core.refs import resolve
from tursi.daemon.artifacts import find_artifact, loaded_from, origin_path
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.deployments import ensure_artifact
from tursi.http.guards import read_json

if TYPE_CHECKING:
    from tursi.formats import bundle  # imported where used: tarfile stays out of an idle tursid

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def caps(daemon: Daemon) -> bundle.Caps:
    from tursi.formats import bundle

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
    from tursi.formats import bundle

    daemon = request.app[DAEMON]
    art = await find_artifact(daemon, request.match_info["key"])
    if art["damaged"]:
        short = art["key"][:12]
        raise UnsafeBundle(f"artifact {short} is damaged: {art['damaged']}", hint=f"tursi rmi {short}")
    name = request.query.get("name") or _default_name(str(art["source"] or art["key"][:12]))
    if not NAME_RE.match(name):
        raise InvalidSpec("the bundle name must match [a-z0-9][a-z0-9._-]{0,63}", param="name")
    root = daemon.settings.artifacts_dir
    directory = root / art["key"]
    manifest = cache.lookup(root, art["key"]) or {}
    loop = asyncio.get_running_loop()
    files = await loop.run_in_executor(None, bundle.describe, directory)
    origin = loaded_from(root, art["key"])  # a loaded artifact travels on under its bundle's key and target
    if origin and isinstance(origin.get("target"), dict):
        index = bundle.make_index(origin["bundle_key"], name, origin["target"], files)
    else:
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


@contextlib.contextmanager
def _disk_full_is_507(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(f"no space left in {root} for the bundle", hint="tursi prune frees unused artifacts") from e
        raise


def _need_space(root: Path, needed: int) -> None:
    """507 before a byte is written when the spool and the unpacked copy (both on this filesystem) cannot fit."""
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DiskFull(
            f"no space left in {root} for the bundle: it needs {needed} bytes (its upload and its unpacked copy), "
            f"{free} are free",
            hint="tursi prune frees unused artifacts",
        )


def _refuse_encoding(request: web.Request) -> None:
    """aiohttp would inflate a compressed body as it arrives, past every cap we count on the wire."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding[:40]!r} is not accepted: send the .tursi file as it is (a plain tar)",
            param="Content-Encoding",
        )


async def _spool(request: web.Request, root: Path, limit: bundle.Caps) -> Path:
    """The upload in a temporary file beside the cache, capped in size and in the free space it may take."""
    from tursi.formats import bundle

    ceiling = limit.total_bytes + bundle.MAX_INDEX_BYTES + bundle.max_headers(limit) * 512
    length = request.content_length
    if length is not None and length > ceiling:
        raise BundleTooLarge(f"the bundle is {length} bytes; the cap is {limit.total_bytes}")
    free = shutil.disk_usage(root).free
    if length is not None:
        _need_space(root, 2 * length)
    fd, spool_name = tempfile.mkstemp(prefix=".tmp-upload-", dir=root)  # removed at start if we die here
    spool = Path(spool_name)
    loop = asyncio.get_running_loop()
    try:
        with os.fdopen(fd, "wb") as fh, _disk_full_is_507(root):
            received = 0
            async for chunk in request.content.iter_chunked(bundle.CHUNK):
                received += len(chunk)
                if received > ceiling:
                    raise BundleTooLarge(f"the upload passed the cap of {limit.total_bytes} bytes")
                if 2 * received > free:
                    _need_space(root, 2 * received)
                await loop.run_in_executor(None, fh.write, chunk)
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return spool


@routes.post("/v1/artifacts/load")
async def load(request: web.Request) -> web.Response:
    """Import a bundle: spool it (capped), verify all of it, check it fits, then unpack and publish under a key of
    the loaded namespace (never one a conversion would compute); a key already here must hold the same files."""
    from tursi.formats import bundle

    daemon = request.app[DAEMON]
    force = request.query.get("force", "") not in ("", "0", "false")
    _refuse_encoding(request)
    limit = caps(daemon)
    root = daemon.settings.artifacts_dir
    root.mkdir(parents=True, exist_ok=True)
    spool = await _spool(request, root, limit)
    loop = asyncio.get_running_loop()
    try:
        info = await loop.run_in_executor(None, bundle.verify, spool, limit)
        reasons = misfits(info.target, daemon.hardware, info.size_bytes)
        if reasons and not force:
            raise TargetMismatch("; ".join(reasons), target=info.target.get("name"), hint="--force loads it anyway")
        key = bundle.local_key(info.key)
        with _disk_full_is_507(root):
            present = await loop.run_in_executor(None, _import, spool, info, root, key)
    finally:
        spool.unlink(missing_ok=True)
    return web.json_response(_record(daemon, info, key, present, reasons))


def _record(daemon: Daemon, info: bundle.BundleInfo, key: str, present: bool, reasons: list[str]) -> dict[str, Any]:
    manifest = info.manifest
    plan = manifest["plan"]
    quantization = manifest.get("quantization") or plan["quantization"]
    root = daemon.settings.artifacts_dir
    reference = manifest.get("source", {}).get("reference", info.name)
    daemon.store.record_artifact(key, str(root / key), reference, plan["format"], quantization, info.size_bytes)
    daemon.store.add_event(None, "loaded", f"bundle {info.name} ({info.key[:12]}) -> {key[:12]}")
    return {
        "key": key,
        "bundle_key": info.key,
        "name": info.name,
        "target": info.target.get("name"),
        "format": plan["format"],
        "quantization": quantization,
        "size_bytes": info.size_bytes,
        "already_present": present,
        "warnings": reasons,
    }


def _import(spool: Path, info: bundle.BundleInfo, root: Path, key: str) -> bool:
    """Unpack under ``key`` unless it is here already (True); either way the files under ``key`` are the bundle's."""
    final = root / key
    if final.exists() or final.is_symlink():
        _same_files(final, info, key)
        return True
    _need_space(root, info.size_bytes)
    if not _unpack(spool, info, root, key):  # another load published this key first: it must hold the same files
        _same_files(final, info, key)
    origin = origin_path(root, key)
    origin.parent.mkdir(exist_ok=True)
    cache.write_json_atomic(origin, {"bundle_key": info.key, "name": info.name, "target": info.target})
    return False


def _same_files(final: Path, info: bundle.BundleInfo, key: str) -> None:
    from tursi.formats import bundle

    try:
        here = bundle.describe(final) if final.is_dir() and not final.is_symlink() else None
    except UnsafeBundle:
        here = None
    if here != info.files:
        raise ArtifactConflict(
            f"artifact {key[:12]} (bundle key {info.key[:12]}) is already here with other files; nothing was loaded",
            key=key,
            hint=f"tursi rmi {key[:12]} removes the one that is here",
        )


def _unpack(spool: Path, info: bundle.BundleInfo, root: Path, key: str) -> bool:
    """Extract into staging, check, publish; False when another run had already published ``key``."""
    from tursi.formats import bundle, onnx_external

    staging = cache.make_staging(root, key)
    try:
        bundle.extract(spool, info, staging)
        onnx_external.check_folder(staging)  # no ONNX tensor may read from outside the artifact
        failpoints.hit("load.before_publish")
        ours = staging.stat().st_ino
        return cache.publish(staging, root, key).stat().st_ino == ours
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
