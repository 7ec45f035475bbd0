"""Control API resource: /v1/artifacts (images, rmi, prune) over the content-addressed cache.

A damaged entry (a manifest that cannot be read or does not fit the schema) is listed with the reason in
``damaged`` and can be removed; it never stops the others from being listed, exported or removed. Removal
renames the folder aside (same filesystem, one atomic step) and deletes it off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from converters import cache
from tursi.core.errors import DeploymentExists, InvalidSpec, ModelNotFound
from tursi.daemon.context import DAEMON, Daemon

routes = web.RouteTableDef()
STALE_DOWNLOAD_S = 600
KEY_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")
KEY = re.compile(r"^[0-9a-f]{32}$")
LOADED = ".loaded"  # LOADED/<key>.json: written by `load` for an artifact that came in a bundle


def origin_path(root: Path, key: str) -> Path:
    return root / LOADED / f"{key}.json"


def loaded_from(root: Path, key: str) -> dict[str, Any] | None:
    """The record `load` kept for an artifact that came from a bundle ({"bundle_key", "name"}), else None."""
    try:
        record = json.loads(origin_path(root, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and KEY.match(str(record.get("bundle_key", ""))) else None


def _users(daemon: Daemon) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for dep in daemon.store.list_deployments(all=True):
        users.setdefault(dep.artifact_key, []).append(dep.name)
    return users


def _entry(root: Path, key: str, users: dict[str, list[str]]) -> dict[str, Any]:
    manifest, problem = cache.read_manifest(root, key)
    manifest = manifest or {}
    plan = manifest.get("plan", {})
    return {
        "key": key,
        "source": manifest.get("source", {}).get("reference"),
        "format": plan.get("format"),
        "quantization": manifest.get("quantization") or plan.get("quantization"),
        "target": plan.get("params", {}).get("hardware_target"),
        "size_bytes": cache.dir_size(root / key),
        "created_at": manifest.get("created_at"),
        "used_by": sorted(users.get(key, [])),
        "origin": "loaded" if origin_path(root, key).is_file() else "converted",
        "damaged": problem,
    }


def _keys(root: Path, prefix: str = "") -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        e.name for e in root.iterdir() if KEY.match(e.name) and e.name.startswith(prefix) and not e.is_symlink()
    )


def scan(root: Path, users: dict[str, list[str]], prefix: str = "") -> list[dict[str, Any]]:
    """Every artifact folder under ``root`` whose key starts with ``prefix`` (blocking: run it off the loop)."""
    return [_entry(root, key, users) for key in _keys(root, prefix)]


@routes.get("/v1/artifacts")
async def list_artifacts(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    arts = await asyncio.to_thread(scan, daemon.settings.artifacts_dir, _users(daemon))
    return web.json_response(arts)


async def find_artifact(daemon: Daemon, prefix: str) -> dict[str, Any]:
    """The one artifact whose key starts with ``prefix``; 404 for none, 400 for several."""
    if not KEY_PREFIX.match(prefix):
        raise InvalidSpec("an artifact key is 4 to 32 hex digits (see `tursi images`)", param="key")
    root = daemon.settings.artifacts_dir
    keys = await asyncio.to_thread(_keys, root, prefix)
    if not keys:
        raise ModelNotFound(f"no artifact {prefix}", hint="tursi images")
    if len(keys) > 1:
        raise InvalidSpec(f"{prefix} matches {len(keys)} artifacts: give more digits", param="key")
    return await asyncio.to_thread(_entry, root, keys[0], _users(daemon))


async def _remove(daemon: Daemon, key: str) -> bool:
    """Rename the folder aside (tursid's start removes `.tmp-*` if we die mid-way), forget it, delete it off the loop.
    False when another request removed it first."""
    root = daemon.settings.artifacts_dir
    aside = root / f".tmp-rm-{key[:12]}-{secrets.token_hex(4)}"
    try:
        os.rename(root / key, aside)
    except FileNotFoundError:
        return False
    origin_path(root, key).unlink(missing_ok=True)
    daemon.store.remove_artifact(key)
    await asyncio.to_thread(shutil.rmtree, aside, True)
    return True


@routes.delete("/v1/artifacts/{key}")
async def remove_artifact(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    art = await find_artifact(daemon, request.match_info["key"])
    if art["used_by"]:
        raise DeploymentExists(
            f"artifact {art['key'][:12]} is used by {', '.join(art['used_by'])}", hint=f"tursi down {art['used_by'][0]}"
        )
    if not await _remove(daemon, art["key"]):
        raise ModelNotFound(f"no artifact {art['key'][:12]} (removed meanwhile)", hint="tursi images")
    return web.json_response({"removed": [art["key"]], "freed_bytes": art["size_bytes"]})


@routes.post("/v1/artifacts/prune")
async def prune(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    removed, freed = [], 0
    for art in await asyncio.to_thread(scan, daemon.settings.artifacts_dir, _users(daemon)):
        if not art["used_by"] and await _remove(daemon, art["key"]):
            removed.append(art["key"])
            freed += art["size_bytes"]
    freed += await asyncio.to_thread(_prune_downloads, daemon.settings.artifacts_dir)
    return web.json_response({"removed": removed, "freed_bytes": freed})


def _prune_downloads(root: Path) -> int:
    """What registry pulls leave beside the cache: GGUFs from other tools' artifacts (``.pulled``; `up` imported
    them into the cache) and partial layers (``.partial``, kept for a resume), untouched for STALE_DOWNLOAD_S (a
    pull still writing is left alone). Returns the bytes freed."""
    freed, now = 0, time.time()
    for folder in (root / ".pulled", root / ".partial"):
        for path in folder.glob("*") if folder.is_dir() else ():
            try:
                st = path.lstat()
                if path.is_file() and not path.is_symlink() and now - st.st_mtime > STALE_DOWNLOAD_S:
                    path.unlink()
                    freed += st.st_size
            except OSError:
                continue
    return freed
