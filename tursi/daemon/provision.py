"""The artifact for a model and a plan: the cache's when (source digest, plan, tool versions) was converted before,
else a fresh conversion in a child process. `up` and `build` both start here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from converters import cache
from tursi.core.plan import Plan, tool_versions
from tursi.core.refs import ModelRef
from tursi.daemon.context import Daemon
from tursi.daemon.conversion import run_conversion

Emit = Callable[[dict[str, Any]], Awaitable[Any]]  # sends one progress event to whoever asked


async def ensure_artifact(daemon: Daemon, ref: ModelRef, plan: Plan, emit: Emit) -> tuple[str, dict[str, Any]]:
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


async def _convert(
    daemon: Daemon, ref: ModelRef, plan: Plan, digest: str, versions: dict[str, str], key: str, emit: Emit
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
