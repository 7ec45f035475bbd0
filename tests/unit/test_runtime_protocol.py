"""The worker reaches a runtime's task methods only through ``runtimes.protocol``: it checks the loaded runtime with
isinstance against the protocol of the deployment's task before serving it. So each backend, loaded the way a worker
loads it (``load_runtime`` from a manifest), must satisfy that protocol at run time, or its model would never be
ready; and a runtime that cannot do its manifest's task fails to load instead of failing each request."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from runtimes import load_runtime
from runtimes.protocol import FOR_TASK, BatchEmbedder
from tursi.core.errors import UnsupportedTask
from tursi.worker.state import WorkerState, require_task


def _onnx(source: Path, out: Path, task: str) -> dict[str, Any]:
    from converters.encoder_onnx import convert

    plan = {"task": task, "format": "onnx", "quantization": "fp32", "runtime": "onnxruntime"}
    out.mkdir()
    return {"plan": plan, **convert(source, out, plan, lambda stage, message: None)}


def _gguf(source: Path, out: Path, task: str) -> dict[str, Any]:
    out.mkdir()
    shutil.copyfile(source, out / "model.gguf")
    plan = {"task": task, "format": "gguf", "quantization": "Q4_1", "runtime": "llama"}
    return {"plan": plan, "files": {"model": "model.gguf"}}


def _worker(artifact: Path, manifest: dict[str, Any]) -> WorkerState:
    st = WorkerState(name="m", model_ref="m", artifact=artifact, manifest=manifest, threads=1)
    st.runtime_loaded(load_runtime(artifact, manifest, threads=1, ctx_size=256))
    return st


@pytest.mark.parametrize(
    ("task", "source", "batched"),
    [
        ("embeddings", "tiny_bert", True),
        ("classification", "tiny_classifier", True),
        ("fill-mask", "tiny_fill_mask", True),
        ("chat", "smollm2_gguf", False),
        ("embeddings", "smollm2_gguf", False),
    ],
)
def test_each_backend_is_the_runtime_of_its_task(
    request: pytest.FixtureRequest, tmp_path: Path, task: str, source: str, batched: bool
) -> None:
    path: Path = request.getfixturevalue(source)
    artifact = tmp_path / "artifact"
    manifest = (_gguf if path.suffix == ".gguf" else _onnx)(path, artifact, task)
    st = _worker(artifact, manifest)
    assert isinstance(st.runtime, FOR_TASK[task])
    assert require_task(st, task) is st.runtime
    # only a runtime with embed_batch gets the batcher that coalesces concurrent requests
    assert isinstance(st.runtime, BatchEmbedder) is batched
    assert (st.batcher is not None) is batched


def test_a_runtime_without_the_tasks_methods_does_not_load(tmp_path: Path, smollm2_gguf: Path) -> None:
    """A manifest that names a task its runtime cannot do was served, and each request was a 500 (AttributeError)."""
    artifact = tmp_path / "artifact"
    manifest = _gguf(smollm2_gguf, artifact, "classification")  # llama.cpp loads it as a chat model
    with pytest.raises(UnsupportedTask, match="LlamaRuntime cannot serve classification"):
        _worker(artifact, manifest)
