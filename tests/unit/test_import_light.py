from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "onnxruntime", "llama_cpp", "optimum", "numpy", "aiohttp")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_cli_imports_no_ml_library() -> None:
    loaded = _loaded_after("import tursi.cli")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_worker_and_daemon_modules_import_no_torch_or_transformers() -> None:
    loaded = _loaded_after("import tursi.worker.app, tursi.daemon.app, runtimes.onnx_embed")
    assert not {m for m in loaded if m.split(".")[0] in ("torch", "transformers", "optimum")}
