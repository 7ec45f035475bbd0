"""Runtimes: one protocol, several backends.

Lifecycle of a runtime inside a worker process:
  1. ``load_runtime(artifact_dir, manifest, ...)`` picks the backend from the manifest's plan; its ``load``
     classmethod reads the model files, imports its native library (onnxruntime, llama_cpp) and builds a session.
     Never at import time.
  2. ``info()`` reports metadata for /ready and the worker's logs.
  3. Task methods (``embed(texts)``, ``generate(prompt, sampling)``, ...; ``runtimes.protocol`` declares them per
     task) run inference; they are synchronous and CPU-bound, so the worker calls them from a thread, never on the
     event loop.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from runtimes.protocol import Runtime

DEFAULT_CTX = 4096
DEFAULT_PARALLEL = 4  # tursi.core.spec.DEFAULT_PARALLEL (runtimes import nothing from tursi.core here)


def model_path(artifact_dir: Path, manifest: dict[str, Any]) -> Path:
    """manifest files.model as a regular file inside the artifact: relative, no '..', no link leading out."""
    from tursi.core.errors import UnsafeModel

    files = manifest.get("files")
    name = files.get("model") if isinstance(files, dict) else None
    if not isinstance(name, str) or not name or "\0" in name:
        raise UnsafeModel("the manifest names no model file (files.model)")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise UnsafeModel(f"files.model {name!r} is not a plain path inside the artifact")
    path = artifact_dir / rel
    root = artifact_dir.resolve()
    if path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise UnsafeModel(f"files.model {name!r} is not a regular file inside the artifact")
    return path


def load_runtime(
    artifact_dir: Path, manifest: dict[str, Any], threads: int, ctx_size: int = 0, parallel: int = 0
) -> Runtime:
    plan = manifest.get("plan", {})
    runtime = plan.get("runtime")
    if runtime == "onnxruntime":
        from runtimes.onnx_embed import OnnxEmbedder
        from runtimes.onnx_tasks import OnnxClassifier, OnnxFillMask, OnnxReranker
        from tursi.formats.onnx_external import check_folder

        check_folder(artifact_dir)  # external-data paths confined before onnxruntime opens anything

        tasks = {"classification": OnnxClassifier, "fill-mask": OnnxFillMask, "rerank": OnnxReranker}
        cls = tasks.get(plan.get("task"), OnnxEmbedder)
        return cls.load(artifact_dir, threads=threads)
    if runtime == "llama":
        from runtimes.llama_runtime import LlamaRuntime
        from tursi.formats.gguf_header import read_header

        model_file = model_path(artifact_dir, manifest)
        info = read_header(model_file)  # always: llama.cpp gets only files whose header we have checked
        if not ctx_size:
            trained = info.metadata.get(f"{info.architecture}.context_length")
            ctx_size = min(DEFAULT_CTX, int(trained)) if isinstance(trained, int) and trained > 0 else DEFAULT_CTX
        embedding = plan.get("task") == "embeddings"
        return LlamaRuntime.load(
            model_file, threads=threads, n_ctx=ctx_size, embedding=embedding, parallel=parallel or DEFAULT_PARALLEL
        )
    raise ValueError(f"unknown runtime {runtime!r} in manifest")
