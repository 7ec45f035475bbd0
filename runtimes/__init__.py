"""Runtimes: one protocol, several backends.

Lifecycle of a runtime inside a worker process:
  1. ``load(artifact_dir, ...)`` (a classmethod) reads the manifest and the model files, imports its
     native library (onnxruntime, llama_cpp) and builds a session. Never at import time.
  2. ``info()`` reports metadata for /v1/models and the worker's logs.
  3. Task methods (``embed(texts)``) run inference; they are synchronous and CPU-bound, so the worker
     calls them from a thread, never on the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class EmbeddingRuntime(Protocol):
    dimension: int

    def info(self) -> dict[str, Any]: ...

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        """(float32 array [n, dimension], number of input tokens)."""
        ...


def load_runtime(artifact_dir: Path, manifest: dict[str, Any], threads: int) -> EmbeddingRuntime:
    runtime = manifest.get("plan", {}).get("runtime")
    if runtime == "onnxruntime":
        from runtimes.onnx_embed import OnnxEmbedder

        return OnnxEmbedder.load(artifact_dir, threads=threads)
    raise ValueError(f"unknown runtime {runtime!r} in manifest")
