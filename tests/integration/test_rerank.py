"""A cross-encoder deployment serves /v1/rerank, best first, with the scores of the transformers model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import post

QUERY = "How do I reset my password?"
DOCS = [
    "Open Settings, choose Account and press Reset password.",
    "The cafeteria serves lunch from noon.",
    "Passwords must be at least twelve characters long.",
    "Trains to Milan leave every hour.",
]


def reference(model_dir: Path) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tok([QUERY] * len(DOCS), DOCS, padding=True, return_tensors="pt")).logits[:, 0]
    return torch.sigmoid(logits).numpy()


def test_rerank_orders_documents_like_the_fp32_model(env: Env, daemon: DaemonProc, tiny_reranker: Path) -> None:
    proc = env.cli("up", str(tiny_reranker), "--name", "rr", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    info = json.loads(env.cli("inspect", "rr", check=True).stdout)
    manifest = info["manifest"]
    assert manifest["plan"]["task"] == "rerank"
    assert manifest["quality"]["score_name"] == "pairwise ranking agreement"
    status, body = post(endpoint + "/rerank", {"query": QUERY, "documents": DOCS, "return_documents": True})
    assert status == 200
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["document"]["text"] == DOCS[r["index"]] for r in results)
    ref = reference(tiny_reranker)
    got = np.array([next(r["relevance_score"] for r in results if r["index"] == i) for i in range(len(DOCS))])
    pairs = [(i, j) for i in range(len(DOCS)) for j in range(i + 1, len(DOCS))]
    agree = np.mean([np.sign(got[i] - got[j]) == np.sign(ref[i] - ref[j]) for i, j in pairs])
    print(
        f"\nrerank ({manifest['plan']['quantization']}, guard {manifest['quality']['score_name']} "
        f"{manifest['quality']['score']} on its probes): order {[r['index'] for r in results]}, transformers fp32 "
        f"order {[int(i) for i in np.argsort(-ref)]}; pairwise agreement {agree:.2f}, "
        f"largest score difference {np.abs(got - ref).max():.3f}"
    )
    assert results[0]["index"] == int(np.argmax(ref))  # the best document is the fp32 model's best
    assert agree >= 0.8  # a random tiny model in int8: scores move by up to ~0.1, close pairs may swap
    np.testing.assert_allclose(got, ref, atol=0.15)
    status, top = post(endpoint.removesuffix("/v1") + "/rerank", {"query": QUERY, "documents": DOCS, "top_n": 2})
    assert status == 200
    assert [r["index"] for r in top["results"]] == [r["index"] for r in results[:2]]
    assert "document" not in top["results"][0]
    assert top["usage"]["prompt_tokens"] > 0


def test_bad_rerank_requests_are_400s(env: Env, daemon: DaemonProc, tiny_reranker: Path) -> None:
    proc = env.cli("up", str(tiny_reranker), "--name", "rr", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    for body, param in (
        ({"documents": DOCS}, "query"),
        ({"query": QUERY, "documents": []}, "documents"),
        ({"query": QUERY, "documents": ["ok", ""]}, "documents"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
        ({"query": QUERY, "documents": DOCS, "return_documents": "yes"}, "return_documents"),
    ):
        status, problem = post(endpoint + "/rerank", body)
        assert (status, problem["param"]) == (400, param)
    status, problem = post(endpoint + "/embeddings", {"input": "x"})
    assert (status, problem["code"]) == (404, "unsupported_task")
    status, _ = post(endpoint + "/rerank", {"query": QUERY, "documents": {"text": "a"}})
    assert status == 400
    status, _ = post(endpoint + "/rerank", {"query": QUERY, "documents": [{"text": "a"}, "b"]})
    assert status == 200  # objects with "text" and plain strings alike
