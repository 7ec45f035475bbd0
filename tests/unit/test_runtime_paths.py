"""The worker opens only the model file its manifest names inside the artifact, and llama.cpp only gets a file whose
GGUF header passed our checks, whatever --ctx-size says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtimes import load_runtime
from tursi.core.errors import UnsafeModel
from tursi.formats.gguf_header import InvalidGGUF

PLAN = {"format": "gguf", "task": "chat", "runtime": "llama", "quantization": "Q4_1"}


def artifact(tmp_path: Path, model: str) -> tuple[Path, dict]:
    d = tmp_path / "artifact"
    d.mkdir(exist_ok=True)
    manifest = {"plan": PLAN, "files": {"model": model}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d, manifest


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "folder"])
def test_a_model_path_outside_the_artifact_is_refused(tmp_path: Path, smollm2_gguf: Path, how: str) -> None:
    """Any GGUF on the device was served when a (loaded) manifest named it."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "m.gguf").write_bytes(smollm2_gguf.read_bytes()[: 1 << 20])
    model = {"absolute": str(smollm2_gguf), "dotdot": "../elsewhere/m.gguf", "symlink": "m.gguf", "folder": "."}[how]
    d, manifest = artifact(tmp_path, model)
    if how == "symlink":
        (d / "m.gguf").symlink_to(smollm2_gguf)
    with pytest.raises(UnsafeModel, match="files.model"):
        load_runtime(d, manifest, threads=1, ctx_size=256)


def test_the_gguf_header_is_checked_even_with_a_context_size(tmp_path: Path) -> None:
    d, manifest = artifact(tmp_path, "model.gguf")
    (d / "model.gguf").write_bytes(b"GGUF" + b"\xff" * 4096)  # header counts no parser should trust
    with pytest.raises(InvalidGGUF):
        load_runtime(d, manifest, threads=1, ctx_size=256)
