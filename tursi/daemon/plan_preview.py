"""Control API resource: POST /v1/plan (`tursi up --dry-run`): what `up` would do on this machine and why.

It takes the body of POST /v1/deployments and plans exactly as `up` does (``deploy_service.plan_up``, the same
errors), then stops: nothing is converted, recorded, claimed or started. Instead it says whether the plan's artifact
is already in the cache (by the same content key ``provision.ensure_artifact`` looks up), and what the artifact and
its worker should take: measured from the artifact when there is one, else estimated from the source's weight
headers scaled to the planned scheme's bits, plus the memory budget's overhead and KV cache (``budget``).
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from pathlib import Path
from typing import Any

from aiohttp import web

from converters import cache
from tursi.core.errors import InvalidSpec
from tursi.core.hardware import load_target
from tursi.core.plan import GUARD_METRIC, Plan, tool_versions
from tursi.core.refs import ModelRef
from tursi.core.spec import DeploymentSpec
from tursi.daemon import budget, deploy_service
from tursi.daemon.context import DAEMON, Daemon
from tursi.formats.gguf_header import read_header
from tursi.http.guards import read_json
from tursi.registry.reference import is_reference

routes = web.RouteTableDef()

# Stored bits per weight of each scheme (a GGUF block's scale included: Q4_0 is 18 bytes per 32 weights).
GGUF_BITS = {"Q4_0": 4.5, "Q4_1": 5.0, "Q4_K_M": 4.85, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0, "F32": 32.0}
LLM_METRIC = "greedy next-token agreement"
_FLOATS = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")  # buffers (position ids: I64) are not weights
_SIDE_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "merges.txt", "config.json", "tokenizer_config.json")


@routes.post("/v1/plan")
async def plan_preview(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = await read_json(request)
    spec = DeploymentSpec.parse(body)
    if is_reference(spec.model):
        raise InvalidSpec(
            f"{spec.model} is a registry reference: a dry run does not pull, so it cannot plan it",
            hint="tursi pull REF, then tursi up KEY --dry-run with the key it prints",
            param="model",
        )
    preview = await asyncio.get_running_loop().run_in_executor(None, preview_up, daemon, spec)
    return web.json_response(preview)


def preview_up(daemon: Daemon, spec: DeploymentSpec) -> dict[str, Any]:
    """What `up` would deploy for ``spec`` and what it would take, without doing any of it. Blocking (resolving may
    read a hub cache, the cache key hashes the source): run it off the event loop."""
    up = deploy_service.plan_up(daemon, spec)
    hw = load_target(spec.target) if spec.target else daemon.hardware
    preview: dict[str, Any] = {
        "model": spec.model,
        "name": up.name,
        "host": up.host,
        "port": up.port,
        "threads": spec.threads or daemon.hardware.physical_cores,
        "hardware": hw.to_dict(),
    }
    if up.built is not None:
        key, manifest = up.built
        plan: dict[str, Any] = manifest["plan"]
        source = manifest.get("source", {}).get("path")
        preview.update(built=True, artifact_key=key, cached=key, source=source)
        estimate = artifact_estimate(daemon, key, manifest, spec.ctx_size)
    elif up.ref is not None and up.plan is not None:
        plan = up.plan.to_dict()
        key_found = cached_key(daemon, up.ref, up.plan)
        preview.update(built=False, artifact_key=key_found, cached=key_found, source=str(up.ref.path))
        found = cache.lookup(daemon.settings.artifacts_dir, key_found) if key_found else None
        if key_found and found is not None:
            estimate = artifact_estimate(daemon, key_found, found, spec.ctx_size)
        else:
            estimate = source_estimate(up.ref, up.plan, spec.ctx_size)
    else:
        raise InvalidSpec("nothing to deploy", param="model")
    preview["plan"] = plan
    preview["quality_floor"] = quality_floor(plan)
    total, memory = daemon.residency.budget.total, estimate["memory_bytes"]
    fits = None if memory is None else memory <= total
    preview["estimate"] = {**estimate, "memory_budget_bytes": total, "fits_budget": fits}
    return preview


def cached_key(daemon: Daemon, ref: ModelRef, plan: Plan) -> str | None:
    """The key of this (source, plan, converter tools) in the cache, as ``ensure_artifact`` computes it; None when
    it was never converted."""
    key = cache.artifact_key(ref.digest(), plan.to_dict(), tool_versions())
    return key if cache.lookup(daemon.settings.artifacts_dir, key) is not None else None


def quality_floor(plan: dict[str, Any]) -> dict[str, Any]:
    """The least quality the conversion must keep against the fp32 source, and how it is measured."""
    params = plan.get("params") or {}
    floor = params.get("min_quality")
    if plan.get("format") == "gguf":
        metric = LLM_METRIC if floor is not None else None
    else:
        metric = GUARD_METRIC.get(str(plan.get("task")))
    why = None
    if floor is None:
        asked = plan.get("converter") == "gguf-quantize"
        why = "requantized as --bits asks: no quality check" if asked else "served as is: nothing converted to check"
    return {"min_quality": floor, "metric": metric, "note": why}


def artifact_estimate(daemon: Daemon, key: str, manifest: dict[str, Any], ctx_size: int) -> dict[str, Any]:
    """Sizes of an artifact that exists (built or cached): measured, not estimated."""
    folder = daemon.settings.artifacts_dir / key
    size = manifest.get("size_bytes")
    return {
        "artifact_bytes": int(size) if isinstance(size, int) else cache.dir_size(folder),
        "memory_bytes": budget.estimate(folder, str(manifest["plan"]["format"]), ctx_size),
        "kv_cache_bytes": None,
        "overhead_bytes": None,
        "basis": f"the artifact {key[:12]} on disk",
    }


def source_estimate(ref: ModelRef, plan: Plan, ctx_size: int) -> dict[str, Any]:
    """Sizes of an artifact not made yet: the source's weights scaled to the planned scheme, the worker's overhead
    and, for an LLM, its KV cache (the memory budget's own figures)."""
    if ref.kind == "gguf":
        weights, kv, basis = _gguf_file(ref.path, plan, ctx_size)
    else:
        tensors = _tensors(ref.path)
        if not tensors:
            return {
                **dict.fromkeys(("artifact_bytes", "memory_bytes", "kv_cache_bytes", "overhead_bytes")),
                "basis": "no safetensors weights to count (pickle weights only)",
            }
        params = sum(math.prod(shape) for _, shape in tensors)
        if plan.format == "gguf":
            weights = int(params * GGUF_BITS.get(plan.quantization, 16.0) / 8)
            kv = _hf_kv_bytes(ref.path, ctx_size)
            basis = f"{params / 1e6:.1f}M parameters at ~{GGUF_BITS.get(plan.quantization, 16.0)} bits"
        else:
            weights, kv = _onnx_weights(tensors, plan), 0
            basis = f"{params / 1e6:.1f}M parameters: {_ONNX_BASIS.get(plan.quantization, 'fp32')}"
        weights += sum(f.stat().st_size for f in (ref.path / n for n in _SIDE_FILES) if f.is_file())
    overhead = budget.OVERHEAD.get(plan.format, budget.OVERHEAD["onnx"])
    return {
        "artifact_bytes": weights,
        "memory_bytes": weights + kv + overhead,
        "kv_cache_bytes": kv if plan.format == "gguf" else None,
        "overhead_bytes": overhead,
        "basis": basis,
    }


def _gguf_file(path: Path, plan: Plan, ctx_size: int) -> tuple[int, int, str]:
    """(artifact bytes, KV cache bytes, basis) for a GGUF file served as is or requantized."""
    size = path.stat().st_size
    kv = budget._kv_bytes(path, ctx_size)  # layers, KV heads and trained context from the file's header
    if plan.converter != "gguf-quantize":
        return size, kv, f"the GGUF file ({plan.quantization}) served as is"
    source = read_header(path).file_type
    ratio = GGUF_BITS.get(plan.quantization, 16.0) / GGUF_BITS.get(source, 16.0)
    return int(size * ratio), kv, f"the {source} file requantized to {plan.quantization} (~{ratio:.2f}x)"


def _tensors(folder: Path) -> list[tuple[str, list[int]]]:
    """(name, shape) of every floating-point tensor in the folder's safetensors files, from their headers (already
    bounds-checked by ``resolve``): no weights are read."""
    found = []
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        found += [(k, v["shape"]) for k, v in header.items() if k != "__metadata__" and v.get("dtype") in _FLOATS]
    return found


_ONNX_BASIS = {
    "int8-dynamic": "int8 MatMul and embedding weights (fp32/4), fp32 norms and biases; the sensitivity search "
    "may keep a few MatMuls fp32",
    "int8-static": "int8 MatMul weights, fp32 embeddings and FFN-output MatMuls",
    "int4": "int4 MatMul weights with a scale per block (~fp32/8), fp32 embeddings",
}


def _onnx_weights(tensors: list[tuple[str, list[int]]], plan: Plan) -> int:
    """Bytes of the ONNX weights: fp32 as exported, then each tensor the scheme quantizes at its own width."""
    block = int(plan.params.get("block_size") or 32)
    total = 0.0
    for name, shape in tensors:
        n = math.prod(shape)
        embedding = "embeddings" in name
        matmul = len(shape) == 2 and not embedding
        if plan.quantization == "int8-dynamic" and len(shape) == 2:
            total += n  # MatMul weights and embedding tables (Gather) alike
        elif plan.quantization == "int8-static" and matmul and not _ffn_output(name):
            total += n
        elif plan.quantization == "int4" and matmul:
            total += n / 2 + 4 * n / block  # 4-bit weights, an fp32 scale per block
        else:
            total += 4 * n
    return int(total)


def _ffn_output(name: str) -> bool:
    """A feed-forward output projection, which static int8 keeps fp32 (converters/onnx_schemes.int8_static)."""
    return ".output.dense." in name and "attention" not in name


def _hf_kv_bytes(folder: Path, ctx_size: int) -> int:
    """The KV cache of an HF causal LM once it is a GGUF, by the memory budget's formula (budget._kv_bytes), from
    config.json instead of a GGUF header."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        layers = int(cfg.get("num_hidden_layers") or 0)
        heads = int(cfg.get("num_attention_heads") or 1)
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg.get("hidden_size") or 0) // heads)
        trained = int(cfg.get("max_position_embeddings") or budget.DEFAULT_CTX)
    except (OSError, ValueError, TypeError, AttributeError, ZeroDivisionError):  # a config we cannot read: no figure
        return 0
    ctx = ctx_size or min(budget.DEFAULT_CTX, trained)
    return max(0, 2 * layers * kv_heads * head_dim * 2 * ctx)
