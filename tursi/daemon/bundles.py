"""Control API: build an artifact for a target, export it as a `.tursi` bundle, import (load/push) one."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from converters import cache
from tursi.core.errors import (
    BundleTooLarge,
    InvalidSpec,
    UnsafeBundle,
    UnsupportedEncoding,
)
from tursi.core.hardware import load_target
from tursi.core.names import NAME_RULE, is_valid_name, slug
from tursi.core.plan import make_plan
from tursi.core.refs import resolve
from tursi.core.spec import DeploymentSpec, field_names
from tursi.daemon.artifacts import find_artifact, loaded_from
from tursi.daemon.bundle_import import disk_full_is_507, import_bundle, need_space
from tursi.daemon.context import DAEMON, Daemon
from tursi.daemon.provision import ensure_artifact
from tursi.http.guards import read_json
from tursi.http.streaming import EventStream

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
        opts = DeploymentSpec.parse(body, field_names("conversion", "serving"))
        ref = resolve(model, revision=opts.revision, allow_pickle=opts.allow_pickle)
        hw = load_target(opts.target) if opts.target else daemon.hardware
        return ref, make_plan(ref, opts, hw), hw.name

    ref, plan, target = await asyncio.get_running_loop().run_in_executor(None, parse)
    stream = EventStream(request, "ndjson", what="build")
    async with stream:  # once the first event is out, a failure is streamed as a problem event
        key, manifest = await ensure_artifact(daemon, ref, plan, stream.send)
        name = slug(ref.display)
        await stream.send({"event": "built", "key": key, "name": name, "target": target, "manifest": manifest})
    return await stream.finish()


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
    name = request.query.get("name") or slug(str(art["source"] or art["key"][:12]))
    if not is_valid_name(name):
        raise InvalidSpec(f"the bundle name must match {NAME_RULE}", param="name")
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
        need_space(root, 2 * length)
    fd, spool_name = tempfile.mkstemp(prefix=".tmp-upload-", dir=root)  # removed at start if we die here
    spool = Path(spool_name)
    loop = asyncio.get_running_loop()
    try:
        with os.fdopen(fd, "wb") as fh, disk_full_is_507(root):
            received = 0
            async for chunk in request.content.iter_chunked(bundle.CHUNK):
                received += len(chunk)
                if received > ceiling:
                    raise BundleTooLarge(f"the upload passed the cap of {limit.total_bytes} bytes")
                if 2 * received > free:
                    need_space(root, 2 * received)
                await loop.run_in_executor(None, fh.write, chunk)
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return spool


@routes.post("/v1/artifacts/load")
async def load(request: web.Request) -> web.Response:
    """Import a bundle: spool it (capped), then verify, check and publish it (``bundle_import``)."""
    daemon = request.app[DAEMON]
    force = request.query.get("force", "") not in ("", "0", "false")
    _refuse_encoding(request)
    limit = caps(daemon)
    root = daemon.settings.artifacts_dir
    root.mkdir(parents=True, exist_ok=True)
    spool = await _spool(request, root, limit)
    try:
        answer = await import_bundle(daemon, spool, limit, force=force)
    finally:
        spool.unlink(missing_ok=True)
    return web.json_response(answer)
