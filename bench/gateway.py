"""The gateway's cost and what replicas buy, measured in one run against the same workers:

- embeddings/s (8 clients, one sentence a request) and LLM tokens/s (4 streaming clients) through the gateway,
  each divided by the same load sent straight to the worker's port, runs alternated (goal >= 0.97);
- embeddings/s through the gateway with 2 replicas of 1 thread each, divided by 1 replica with the same 2 threads
  (on 2 cores the two use the same cores: the figure says what balancing costs, not what spare cores would give).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import corpus, llm
from bench.harness import BenchDaemon
from bench.load import embed_load

CLIENTS = 8


def run(
    daemon: BenchDaemon, gateway_port: int, model_dir: Path, gguf: Path, n: int, runs: int, seconds: float
) -> dict[str, Any]:
    texts = corpus.sentences(n)
    daemon.cli("up", str(model_dir), "--name", "emb", "--threads", "2", "--keep-alive", "forever")
    direct = int(daemon.deployment("emb")["port"])
    embed_load(direct, texts[:32], CLIENTS, 1)  # warm
    straight, through = [], []
    for _ in range(runs):
        straight.append(embed_load(direct, texts, CLIENTS, 1)["sentences_per_s"])
        through.append(embed_load(gateway_port, texts, CLIENTS, 1, model="emb")["sentences_per_s"])
    daemon.cli("down", "emb")
    daemon.cli("up", str(model_dir), "--name", "emb", "--threads", "1", "--replicas", "2", "--keep-alive", "forever")
    embed_load(gateway_port, texts[:32], CLIENTS, 1, model="emb")
    two = [embed_load(gateway_port, texts, CLIENTS, 1, model="emb")["sentences_per_s"] for _ in range(runs)]
    daemon.cli("down", "emb")
    daemon.cli("up", str(gguf), "--name", "chat", "--threads", "2", "--ctx-size", "2048", "--keep-alive", "forever")
    port = int(daemon.deployment("chat")["port"])
    tok_straight, tok_through = [], []
    for _ in range(runs):
        tokens, took, _ = llm.concurrent(port, seconds, 32)
        tok_straight.append(tokens / took)
        tokens, took, _ = llm.concurrent(gateway_port, seconds, 32, model="chat")
        tok_through.append(tokens / took)
    daemon.cli("down", "chat")
    med = statistics.median
    return {
        "embeddings_per_s": {"direct": med(straight), "gateway": med(through), "gateway_2_replicas": med(two)},
        "llm_tokens_per_s": {"direct": med(tok_straight), "gateway": med(tok_through)},
        "ratios": {
            "gateway_vs_direct_embeddings": round(med(through) / med(straight), 3),
            "gateway_vs_direct_llm_tokens": round(med(tok_through) / med(tok_straight), 3),
            "replicas2_vs_1_embeddings": round(med(two) / med(through), 3),
        },
    }
