"""Control API resource: /v1/registry: artifacts to and from OCI registries (tag, push, pull, login).

tursid does the registry traffic itself: it holds the artifact cache, and a device pulls for itself (`tursi up REF`
against a remote daemon) instead of through the workstation. Credentials come with the request (the CLI sends its
own for that registry) or from the daemon's own store (`tursi login --daemon`), never stored from a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from aiohttp import web

from converters import cache
from tursi.core.addresses import is_loopback
from tursi.core.errors import DeploymentNotFound, InvalidSpec
from tursi.core.hardware import load_target
from tursi.daemon.context import DAEMON, Daemon
from tursi.http.guards import read_json
from tursi.http.streaming import EventStream
from tursi.registry.artifacts import pull_artifact, push_artifact, push_index
from tursi.registry.client import RegistryClient
from tursi.registry.credentials import CredentialStore, RegistryAuth
from tursi.registry.reference import Reference, is_reference, parse_reference

routes = web.RouteTableDef()
Send = Callable[[dict[str, Any]], Awaitable[bool]]
PROGRESS_EVERY_S = 0.5
# Registry traffic runs on threads of its own: a registry that stalls (or six of them) holds these, never the
# default pool that `up`, `images` and `rmi` share. More pulls than threads wait their turn.
REGISTRY_THREADS = 4
_pool: ThreadPoolExecutor | None = None


def registry_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(REGISTRY_THREADS, thread_name_prefix="tursi-registry")
    return _pool


def daemon_credentials(daemon: Daemon) -> CredentialStore:
    return CredentialStore(daemon.settings.home / "registries.json")


def client_for(daemon: Daemon, ref: Reference, given: Any) -> RegistryClient:
    """A client for ``ref``'s registry with the request's credentials, else the daemon's own."""
    auth = RegistryAuth.from_json(given) if isinstance(given, dict) else daemon_credentials(daemon).get(ref.registry)
    if auth.plain_http and not is_loopback(ref.registry.rsplit(":", 1)[0].strip("[]")):
        raise InvalidSpec("plain HTTP is for a registry on loopback only", param="auth.plain_http")
    return RegistryClient(ref.registry, auth.username, auth.password, auth.ca_pem, auth.plain_http)


def _ref(body: dict[str, Any], field: str = "ref") -> Reference:
    value = body.get(field)
    if not isinstance(value, str):
        raise InvalidSpec(f"'{field}' must be a registry reference (host[:port]/repository[:tag])", param=field)
    return parse_reference(value)


def source_key(daemon: Daemon, source: str) -> str:
    """The artifact ``source`` names: a deployment, an artifact key (or a unique prefix of one) or a known tag."""
    dep = daemon.store.get_deployment(source)
    if dep is not None and dep.artifact_key:
        return dep.artifact_key
    tag = daemon.store.get_tag(source)
    if tag is not None:
        return str(tag["artifact_key"])
    root = daemon.settings.artifacts_dir
    found = [d.name for d in root.iterdir() if d.name.startswith(source) and not d.name.startswith(".")] if (
        len(source) >= 6 and root.is_dir()) else []  # fmt: skip
    if len(found) == 1 and cache.lookup(root, found[0]) is not None:
        return found[0]
    raise DeploymentNotFound(f"no deployment, artifact or tag named {source!r}", hint="tursi images; tursi ps")


@routes.post("/v1/registry/tags")
async def tag(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = await read_json(request)
    ref = _ref(body)
    if ref.digest:
        raise InvalidSpec("a tag names a tag, not a digest", param="ref")
    source = body.get("source")
    if not isinstance(source, str) or not source:
        raise InvalidSpec("'source' must name a deployment, an artifact key or a tag", param="source")
    key = source_key(daemon, source)
    daemon.store.set_tag(str(ref), key)
    return web.json_response({"ref": str(ref), "key": key})


@routes.get("/v1/registry/tags")
async def tags(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON].store.list_tags())


@routes.post("/v1/registry/push")
async def push(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = await read_json(request)
    ref = _ref(body)
    known = daemon.store.get_tag(str(ref))
    if known is None:
        raise DeploymentNotFound(f"no artifact is tagged {ref} here", hint=f"tursi tag SOURCE {ref}")
    artifact = daemon.settings.artifacts_dir / str(known["artifact_key"])
    client = client_for(daemon, ref, body.get("auth"))
    pushed = await asyncio.get_running_loop().run_in_executor(registry_pool(), push_artifact, client, ref, artifact)
    daemon.store.set_tag(str(ref), str(known["artifact_key"]), pushed.digest)
    return web.json_response(asdict(pushed))


@routes.post("/v1/registry/push-index")
async def push_targets(request: web.Request) -> web.Response:
    """One tag for several targets: ``sources`` (deployments, keys or tags of artifacts built for target profiles)
    pushed as an OCI image index under ``ref``."""
    daemon = request.app[DAEMON]
    body = await read_json(request)
    ref = _ref(body)
    sources = body.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise InvalidSpec("'sources' must be a list of artifacts (deployments, keys or tags)", param="sources")
    entries = []
    for source in sources:
        key = source_key(daemon, source)
        manifest = cache.lookup(daemon.settings.artifacts_dir, key) or {}
        target = str(manifest.get("plan", {}).get("params", {}).get("hardware_target") or "detected")
        profile = daemon.hardware if target == "detected" else load_target(target)
        entries.append((daemon.settings.artifacts_dir / key, profile))
    client = client_for(daemon, ref, body.get("auth"))
    pushed = await asyncio.get_running_loop().run_in_executor(registry_pool(), push_index, client, ref, entries)
    return web.json_response(asdict(pushed))


async def pull_into_cache(daemon: Daemon, ref: Reference, auth: Any, send: Send | None = None) -> dict[str, Any]:
    """Pulls ``ref``; with ``send``, "bytes" events (done, total) every half second once layers are downloading.
    Nothing is sent before: a refusal (credentials, a tag that fits no target) still gets its own status code."""
    client = client_for(daemon, ref, auth)
    root = daemon.settings.artifacts_dir
    seen: list[tuple[int, int]] = []
    job = asyncio.get_running_loop().run_in_executor(
        registry_pool(),
        pull_artifact,
        client,
        ref,
        root,
        daemon.hardware,
        (lambda *at: seen.append(at)) if send else None,
    )
    sent: tuple[int, int] | None = None
    while send is not None and not job.done():
        await asyncio.wait({job}, timeout=PROGRESS_EVERY_S)
        if seen and seen[-1] != sent and not (job.done() and job.exception()):
            sent = seen[-1]
            seen[:] = [sent]
            await send({"event": "bytes", "message": f"pulling {ref}", "done": sent[0], "total": sent[1]})
    pulled = await job
    answer = {"ref": str(ref), "downloaded": pulled.downloaded, "bytes": client.traffic.bytes_downloaded}
    if pulled.key is None:  # another tool's model-spec artifact: its GGUF, which `up` imports like any GGUF file
        return {**answer, "key": None, "gguf": str(pulled.gguf)}
    key = pulled.key
    manifest = cache.lookup(root, key) or {}
    plan = manifest.get("plan", {})
    quant = str(manifest.get("quantization") or plan.get("quantization", ""))
    daemon.store.record_artifact(key, str(root / key), str(ref), plan.get("format", ""), quant,
                                 int(manifest.get("size_bytes", 0)))  # fmt: skip
    daemon.store.set_tag(str(ref), key)
    return {**answer, "key": key}


@routes.post("/v1/registry/pull")
async def pull(request: web.Request) -> web.StreamResponse:
    """The pull's result; with ``"stream": true``, NDJSON "bytes" events while layers download, then "pulled"."""
    daemon = request.app[DAEMON]
    body = await read_json(request)
    if body.get("stream") is not True:
        return web.json_response(await pull_into_cache(daemon, _ref(body), body.get("auth")))
    stream = EventStream(request, "ndjson", what="pull")
    async with stream:
        answer = await pull_into_cache(daemon, _ref(body), body.get("auth"), stream.send)
        await stream.send({"event": "pulled", **answer})
    return await stream.finish()


@routes.post("/v1/registry/login")
async def login(request: web.Request) -> web.Response:
    """The daemon's own credentials for a registry (`tursi login --daemon`), checked before they are kept."""
    daemon = request.app[DAEMON]
    body = await read_json(request)
    registry = body.get("registry")
    if not isinstance(registry, str) or not is_reference(f"{registry}/x"):
        raise InvalidSpec("'registry' must be host[:port]", param="registry")
    auth = RegistryAuth.from_json(body)
    client = client_for(daemon, Reference(registry, "x"), auth.as_json())
    await asyncio.get_running_loop().run_in_executor(registry_pool(), client.ping)
    daemon_credentials(daemon).save(registry, auth)
    return web.json_response({"registry": registry, "stored": True})


@routes.delete("/v1/registry/login/{registry}")
async def logout(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"removed": daemon_credentials(daemon).remove(request.match_info["registry"])})
