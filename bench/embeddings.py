"""MiniLM embeddings: Tursi over HTTP (int8, dynamic batching on and off) vs fp32 transformers in-process
(sentence-transformers' recipe, batch 32) vs raw onnxruntime on the very same artifact (batch 32); and fairness:
small-request latency alone and while one maximum-size request (as many long texts as one request may hold, just
under the token cap) runs.

Both in-process baselines sort the texts by length before batching, as sentence-transformers' encode() does,
so padding costs them no more than Tursi's length groups cost it."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import sentences
from bench.harness import BenchDaemon
from bench.load import embed_load, p95, post_json, post_timed, small_requests

BATCH = 32
LONG_TOKENS = 140  # 2,048 texts of this many tokens stay under the 300,000-token cap of one request


def fp32_inprocess(model_dir: Path, texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def encode(batch: list[str]) -> np.ndarray:
        enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()

    encode(texts[:BATCH])  # warm-up
    t0 = time.perf_counter()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]
    chunks = np.concatenate([encode(ordered[i : i + BATCH]) for i in range(0, len(texts), BATCH)])
    rate = len(texts) / (time.perf_counter() - t0)
    vectors = np.empty_like(chunks)
    vectors[order] = chunks
    return rate, vectors


def raw_onnxruntime(artifact: Path, texts: list[str], threads: int) -> float:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(artifact / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def encode(batch: list[str]) -> np.ndarray:
        enc = tok.encode_batch(batch)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    encode(texts[:BATCH])
    t0 = time.perf_counter()
    ordered = sorted(texts, key=len)
    for i in range(0, len(ordered), BATCH):
        encode(ordered[i : i + BATCH])
    return len(texts) / (time.perf_counter() - t0)


def long_texts(artifact: Path, n: int, tokens: int = LONG_TOKENS) -> tuple[list[str], int]:
    """``n`` distinct paragraphs of about ``tokens`` tokens each (cut at a token boundary) and their token total."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=tokens)
    pool = sentences(8 * n, seed=11)
    drafts = [" ".join(pool[8 * i : 8 * i + 8]) + f" (paragraph {i})" for i in range(n)]
    encodings = tok.encode_batch(drafts)
    texts = [d[: e.offsets[-2][1]] for d, e in zip(drafts, encodings, strict=True)]  # [-1] is [SEP]
    return texts, sum(len(e.ids) for e in encodings)


def fairness(port: int, artifact: Path, n: int, small: list[str]) -> dict[str, Any]:
    """Small-request latency (one client, one short text a request) alone, then while one request of ``n`` long
    texts runs; the goal is small p95 with the big request <= 0.05 of the big request's duration."""
    alone = small_requests(port, small, count=max(20, n // 20))
    big_texts, big_tokens = long_texts(artifact, n)
    stop = threading.Event()
    took: list[float] = []

    def big() -> None:
        try:
            took.append(post_timed(port, {"input": big_texts, "encoding_format": "base64"}))
        finally:
            stop.set()

    thread = threading.Thread(target=big)
    thread.start()
    with_big = small_requests(port, small, stop=stop)
    thread.join()
    if not took:
        raise RuntimeError("the maximum-size request failed")
    return {
        "big_texts": n,
        "big_tokens": big_tokens,
        "big_request_s": round(took[0], 2),
        "small_requests_with_big": len(with_big),
        "small_p50_ms_alone": round(1000 * statistics.median(alone), 1),
        "small_p95_ms_alone": round(1000 * p95(alone), 1),
        "small_p50_ms_with_big": round(1000 * statistics.median(with_big), 1),
        "small_p95_ms_with_big": round(1000 * p95(with_big), 1),
        "small_p95_with_big_vs_big_request": round(p95(with_big) / took[0], 4),
    }


def run(daemon: BenchDaemon, model_dir: Path, n: int, runs: int, threads: int) -> dict[str, Any]:
    texts = sentences(n)
    daemon.cli("up", "minilm", "--name", "emb", "--threads", str(threads))
    daemon.cli("up", "minilm", "--name", "emb-nobatch", "--threads", str(threads), "--max-batch", "1")
    dep, nob = daemon.deployment("emb"), daemon.deployment("emb-nobatch")
    artifact = Path(dep["artifact_path"])
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", dep["port"], timeout=120)
    got = post_json(conn, "/v1/embeddings", {"input": texts[:64]})
    conn.close()
    tursi_vecs = np.array([d["embedding"] for d in got["data"]])
    fp32_rate, fp32_vecs = fp32_inprocess(model_dir, texts, threads)
    cos = (tursi_vecs * fp32_vecs[:64]).sum(1)
    for port in (dep["port"], nob["port"]):  # warm both workers
        embed_load(port, texts[:64], 4, 4)
    figures: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    for _ in range(runs):  # interleaved so drift hits every side alike
        add("raw_ort_batch32", raw_onnxruntime(artifact, texts, threads))
        one = embed_load(dep["port"], texts[: max(64, n // 4)], 1, 1)
        add("tursi_1client", one["sentences_per_s"])
        add("tursi_1client_p50_ms", one["p50_ms"])
        one_nb = embed_load(nob["port"], texts[: max(64, n // 4)], 1, 1)
        add("nobatch_1client_p50_ms", one_nb["p50_ms"])
        add("tursi_8clients_x4", embed_load(dep["port"], texts, 8, 4)["sentences_per_s"])
        add("nobatch_8clients_x4", embed_load(nob["port"], texts, 8, 4)["sentences_per_s"])
        add("tursi_8clients_x1", embed_load(dep["port"], texts, 8, 1)["sentences_per_s"])
        add("nobatch_8clients_x1", embed_load(nob["port"], texts, 8, 1)["sentences_per_s"])
    med = {k: statistics.median(v) for k, v in figures.items()}
    rss = daemon.deployment("emb")["mem_bytes"]
    fair = fairness(dep["port"], artifact, n, texts[:64])
    fair["worker_rss_bytes_after_big"] = daemon.deployment("emb")["mem_bytes"]
    return {
        "model": "all-MiniLM-L6-v2",
        "quantization": dep["quantization"],
        "sentences": n,
        "runs": runs,
        "threads": threads,
        "workload": "8 clients x 4 sentences a request (32 in flight) unless named otherwise; base64 vectors",
        "sentences_per_s": {
            "fp32_inprocess_batch32": round(fp32_rate, 1),
            **{k: round(v, 1) for k, v in med.items() if not k.endswith("_ms")},
        },
        "latency_ms": {k: round(v, 2) for k, v in med.items() if k.endswith("_ms")},
        "cosine_vs_fp32": {"min": round(float(cos.min()), 4), "mean": round(float(cos.mean()), 4)},
        "ratios": {
            "tursi_8clients_vs_fp32_inprocess": round(med["tursi_8clients_x4"] / fp32_rate, 2),
            "tursi_8clients_vs_raw_ort": round(med["tursi_8clients_x4"] / med["raw_ort_batch32"], 3),
            "batching_gain_8clients_x4": round(med["tursi_8clients_x4"] / med["nobatch_8clients_x4"], 2),
            "batching_gain_8clients_x1": round(med["tursi_8clients_x1"] / med["nobatch_8clients_x1"], 2),
            "batching_1client_latency": round(med["tursi_1client_p50_ms"] / med["nobatch_1client_p50_ms"], 3),
            "small_p95_with_big_vs_big_request": fair["small_p95_with_big_vs_big_request"],
        },
        "fairness": fair,
        "worker_rss_bytes": rss,
    }
