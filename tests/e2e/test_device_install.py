"""A device install: tursi[serve] in a fresh venv with no torch, transformers or optimum loads the MiniLM bundle
built on the workstation and serves it (API key, official openai client); its size is reported next to the
full install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProc, Env
from tests.e2e.conftest import dir_size
from tests.e2e.test_minilm import SENTENCES, fp32_reference

pytestmark = pytest.mark.slow


def test_serving_only_venv_deploys_a_bundle(
    serve_venv: Path, minilm_bundle: tuple[Path, dict], device_env: Env, minilm_dir: Path
) -> None:
    from openai import AuthenticationError, OpenAI

    python = serve_venv / "bin" / "python"
    for heavy in ("torch", "transformers", "optimum", "onnx"):
        probe = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{heavy} is importable in the serving-only venv"
    bundle, index = minilm_bundle
    DaemonProc(device_env, [str(serve_venv / "bin" / "tursid")]).start()

    def tursi(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(serve_venv / "bin" / "tursi"), *args], env=device_env.vars, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    loaded = tursi("load", str(bundle)).stdout
    assert "as artifact" in loaded
    key = loaded.split("as artifact ", 1)[1].split()[0]  # loaded artifacts get this daemon's own key
    assert key != index["key"][:12]
    up = tursi("up", key, "--name", "minilm", "--api-key", "auto")
    endpoint = up.stdout.split("ready: ", 1)[1].split()[0]
    api_key = up.stdout.split("store it now): ", 1)[1].split()[0]
    assert "no conversion" in up.stderr
    (dep,) = device_env.ps()
    maps = Path(f"/proc/{dep['pid']}/maps").read_text()
    assert "torch" not in maps
    assert "transformers" not in maps
    assert str(serve_venv) in Path(f"/proc/{dep['pid']}/cmdline").read_text()  # the device's python runs it

    client = OpenAI(base_url=endpoint, api_key=api_key)
    got = np.array([d.embedding for d in client.embeddings.create(model="minilm", input=SENTENCES).data])
    cos = (got * fp32_reference(minilm_dir, SENTENCES)).sum(1)
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=endpoint, api_key="wrong-key-wrong-key").embeddings.create(model="minilm", input="x")

    serve_size, full_size = dir_size(serve_venv), dir_size(Path(sys.prefix))
    print(
        f"serving-only venv {serve_size / 2**20:.0f} MiB vs full install {full_size / 2**20:.0f} MiB "
        f"({serve_size / full_size:.0%}); MiniLM from the bundle vs fp32: min cos {cos.min():.4f} mean {cos.mean():.4f}"
    )
    assert cos.min() > 0.94  # x86-64-v3 plans 7-bit weights (no VNNI): a little below the 8-bit figure
    assert serve_size < full_size / 2
