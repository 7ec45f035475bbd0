"""End to end on the real all-MiniLM-L6-v2: `tursi up minilm`, the openai client, fp32 agreement."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProc, Env
from tests.integration.test_batching import mixed_burst
from tests.integration.test_lifecycle import free_port, port_is_free

pytestmark = pytest.mark.slow

SENTENCES = [
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "Stock markets fell sharply after the announcement.",
    "How do I install Python on a Raspberry Pi?",
    "Quantum computers use qubits instead of bits.",
    "I love eating fresh strawberries in summer.",
    "The meeting has been moved to Thursday at 3pm.",
    "Paris is the capital of France.",
    "Der Hund spielt im Garten mit einem Ball.",
    "¿Dónde está la estación de tren?",
    "Error: connection refused on port 8080",
    "def add(a, b): return a + b",
    "SELECT * FROM orders WHERE total > 100;",
    "The mitochondria is the powerhouse of the cell.",
    "She scored the winning goal in the final minute.",
    "Please reset my password, I forgot it again.",
    "Edge devices run models close to where data is produced.",
    "Thermal throttling slows the CPU when it gets too hot.",
    "OK",
    "🙂 emojis are tokens too",
    "A very long sentence " + "that keeps going and going " * 30 + "until it is truncated.",
    "Photosynthesis converts light energy into chemical energy.",
    "The contract terminates upon thirty days written notice.",
    "Bananas are berries, but strawberries are not.",
]


def fp32_reference(model_dir: Path, texts: list[str]) -> np.ndarray:
    """sentence-transformers' recipe with plain transformers: mean pooling over the mask, then L2."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_minilm_end_to_end(env: Env, daemon: DaemonProc, minilm_dir: Path) -> None:
    from openai import OpenAI

    port = free_port()
    t0 = time.monotonic()
    first = env.cli("up", "minilm", "--port", str(port), check=True)
    cold_s = time.monotonic() - t0
    assert first.stdout.strip() == f"minilm is ready: http://127.0.0.1:{port}/v1"
    assert "quantizing: int8-dynamic" in first.stderr

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["minilm"]
    resp = client.embeddings.create(model="minilm", input=SENTENCES)  # the client asks for base64 by default
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert got.shape == (len(SENTENCES), 384)
    assert resp.usage.prompt_tokens > len(SENTENCES)
    single = client.embeddings.create(model="minilm", input=SENTENCES[0], encoding_format="float")
    # int8 dynamic quantization scales activations per batch, so batch-mates move a vector slightly
    assert np.dot(single.data[0].embedding, got[0]) > 0.99

    ref = fp32_reference(minilm_dir, SENTENCES)
    cos = (got * ref).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    print(
        f"\nMiniLM int8 vs fp32 transformers over {len(SENTENCES)} sentences: min={cos.min():.4f} mean={cos.mean():.4f}"
    )
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.95  # measured .96 on "OK"; raising it is the hardware-matched conversion issue
    # meaning survives quantization: the paraphrase is the nearest neighbour of sentence 0
    sims = got @ got[0]
    assert int(np.argsort(-sims)[1]) == 1
    # one client in eight sending text no tokenizer can take fails no one else's request
    mixed_burst(f"http://127.0.0.1:{port}/v1")

    # a second up of the same model reuses the artifact
    t1 = time.monotonic()
    second = env.cli("up", "minilm", "--name", "minilm-again", check=True)
    warm_s = time.monotonic() - t1
    assert "using cached artifact" in second.stderr
    assert "quantizing" not in second.stderr
    print(f"up cold (conversion) {cold_s:.1f}s, warm (cached) {warm_s:.1f}s")

    deps = {d["name"]: d for d in env.ps()}
    assert set(deps) == {"minilm", "minilm-again"}
    assert deps["minilm"]["artifact_key"] == deps["minilm-again"]["artifact_key"]
    assert "minilm" in env.cli("logs", "minilm", "--tail", "20", check=True).stdout
    snap = json.loads(env.cli("stats", "--no-stream", "--format", "json", check=True).stdout)
    assert {d["name"] for d in snap["deployments"]} == {"minilm", "minilm-again"}

    assert sorted(env.cli("down", "--all", check=True).stdout.split()) == ["minilm", "minilm-again"]
    assert port_is_free(port)
    assert env.ps("-a") == []
