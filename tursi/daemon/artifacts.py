"""Control API resource: /v1/artifacts (images, rmi, prune) over the content-addressed cache."""

from __future__ import annotations

import re
import shutil
from typing import Any

from aiohttp import web

from converters import cache
from tursi.daemon.context import DAEMON, Daemon
from tursi.errors import DeploymentExists, InvalidSpec, ModelNotFound

routes = web.RouteTableDef()
KEY_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")


def _artifacts(daemon: Daemon) -> list[dict[str, Any]]:
    users: dict[str, list[str]] = {}
    for dep in daemon.store.list_deployments(all=True):
        users.setdefault(dep.artifact_key, []).append(dep.name)
    out = []
    root = daemon.settings.artifacts_dir
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = cache.lookup(root, entry.name) if not entry.name.startswith(".") else None
        if manifest is None:
            continue
        plan = manifest.get("plan", {})
        out.append(
            {
                "key": entry.name,
                "source": manifest.get("source", {}).get("reference"),
                "format": plan.get("format"),
                "quantization": manifest.get("quantization") or plan.get("quantization"),
                "size_bytes": cache.dir_size(entry),
                "created_at": manifest.get("created_at"),
                "used_by": sorted(users.get(entry.name, [])),
            }
        )
    return out


@routes.get("/v1/artifacts")
async def list_artifacts(request: web.Request) -> web.Response:
    return web.json_response(_artifacts(request.app[DAEMON]))


def find_artifact(daemon: Daemon, prefix: str) -> dict[str, Any]:
    """The one artifact whose key starts with ``prefix``; 404 for none, 400 for several."""
    if not KEY_PREFIX.match(prefix):
        raise InvalidSpec("an artifact key is 4 to 32 hex digits (see `tursi images`)", param="key")
    matches = [a for a in _artifacts(daemon) if a["key"].startswith(prefix)]
    if not matches:
        raise ModelNotFound(f"no artifact {prefix}", hint="tursi images")
    if len(matches) > 1:
        raise InvalidSpec(f"{prefix} matches {len(matches)} artifacts: give more digits", param="key")
    return matches[0]


@routes.delete("/v1/artifacts/{key}")
async def remove_artifact(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    art = find_artifact(daemon, request.match_info["key"])
    if art["used_by"]:
        raise DeploymentExists(
            f"artifact {art['key'][:12]} is used by {', '.join(art['used_by'])}", hint=f"tursi down {art['used_by'][0]}"
        )
    shutil.rmtree(daemon.settings.artifacts_dir / art["key"])
    return web.json_response({"removed": [art["key"]], "freed_bytes": art["size_bytes"]})


@routes.post("/v1/artifacts/prune")
async def prune(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    removed, freed = [], 0
    for art in _artifacts(daemon):
        if not art["used_by"]:
            shutil.rmtree(daemon.settings.artifacts_dir / art["key"])
            removed.append(art["key"])
            freed += art["size_bytes"]
    return web.json_response({"removed": removed, "freed_bytes": freed})
