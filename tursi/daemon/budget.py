"""The memory budget: what a deployment needs before it loads, and what loaded deployments hold.

Before a deployment has run, its need is estimated from its artifact: the weights (file sizes), for a GGUF the KV
cache of its context (from the file's header: layers x KV heads x head size x 2 (K and V) x 2 bytes (f16) per
token), and the runtime's own overhead (Python, the runtime's libraries, the HTTP agent; measured here: a tiny BERT
worker holds about 97 MiB with 5 MB of weights, SmolLM2 about 60 MiB besides its weights and KV cache). Once it has
run, the largest resident memory the sampler saw replaces the estimate where it is larger. A loaded deployment holds
what its worker holds now (or its need, while it starts).
"""

from __future__ import annotations

import logging
from pathlib import Path

import psutil

from tursi.core.sizes import parse_size
from tursi.daemon.state import Deployment

log = logging.getLogger(__name__)
MIB = 1 << 20
OVERHEAD = {"gguf": 80 * MIB, "onnx": 100 * MIB}
DEFAULT_CTX = 4096  # the worker's default: min(4096, trained)


def default_budget(total: int | None = None) -> int:
    total = total if total is not None else psutil.virtual_memory().total
    return total - max(512 * MIB, total // 10)


def budget_from(setting: str) -> int:
    return parse_size(setting) if setting.strip() else default_budget()


class Budget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.measured: dict[str, int] = {}  # name -> largest RSS seen while it ran
        self._estimates: dict[tuple[str, str], int] = {}

    def observe(self, name: str, rss: int) -> None:
        self.measured[name] = max(rss, self.measured.get(name, 0))

    def forget(self, name: str) -> None:
        self.measured.pop(name, None)

    def need(self, dep: Deployment) -> int:
        """What loading ``dep`` will take: the estimate, or what it was seen to hold when that was more (a sample
        taken while it was still loading holds less than it will)."""
        return max(self.estimate(dep), self.measured.get(dep.name, 0))

    def estimate(self, dep: Deployment) -> int:
        """What loading ``dep`` should take, from its artifact alone."""
        key = (dep.artifact_path, str(dep.options.get("ctx_size", 0)))
        if key not in self._estimates:
            self._estimates[key] = estimate(Path(dep.artifact_path), dep.format, int(dep.options.get("ctx_size") or 0))
        return self._estimates[key]

    def held(self, dep: Deployment) -> int:
        """What a loaded deployment holds now."""
        if dep.pid:
            try:
                return max(psutil.Process(dep.pid).memory_info().rss, 0)
            except psutil.Error:
                pass
        return self.need(dep)


def estimate(artifact: Path, fmt: str, ctx_size: int) -> int:
    weights = sum(
        f.stat().st_size for f in artifact.rglob("*") if f.is_file() and f.suffix in (".gguf", ".onnx", ".data")
    )
    if fmt != "gguf":
        return weights + OVERHEAD["onnx"]
    kv = 0
    for model in artifact.glob("*.gguf"):
        kv = max(kv, _kv_bytes(model, ctx_size))
    return weights + kv + OVERHEAD["gguf"]


def _kv_bytes(model: Path, ctx_size: int) -> int:
    from tursi.formats.gguf_header import read_header

    try:
        meta = read_header(model).metadata
    except Exception:  # an unreadable header: the worker will say why when it loads
        log.warning("no KV estimate for %s: unreadable header", model)
        return 0
    arch = meta.get("general.architecture", "")
    layers = int(meta.get(f"{arch}.block_count", 0) or 0)
    heads = int(meta.get(f"{arch}.attention.head_count", 1) or 1)
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads) or heads)
    width = int(meta.get(f"{arch}.embedding_length", 0) or 0)
    head_dim = int(meta.get(f"{arch}.attention.key_length", width // max(heads, 1)) or 0)
    trained = int(meta.get(f"{arch}.context_length", DEFAULT_CTX) or DEFAULT_CTX)
    ctx = ctx_size or min(DEFAULT_CTX, trained)
    return 2 * layers * kv_heads * head_dim * 2 * ctx
