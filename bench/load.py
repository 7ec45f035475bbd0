"""A light HTTP load generator: N threads, one keep-alive connection each (the server shares the cores)."""

from __future__ import annotations

import http.client
import json
import math
import statistics
import threading
import time
from typing import Any


def post_json(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return json.loads(data)


def embed_load(
    port: int, texts: list[str], clients: int, per_request: int, model: str | None = None
) -> dict[str, float]:
    """Every text embedded once, spread over ``clients`` connections, ``per_request`` texts a request (naming
    ``model``, for the gateway)."""
    named = {"model": model} if model is not None else {}
    shares = [texts[k::clients] for k in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(share: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        try:
            for i in range(0, len(share), per_request):
                t0 = time.perf_counter()
                body = {"input": share[i : i + per_request], "encoding_format": "base64", **named}
                post_json(conn, "/v1/embeddings", body)
                mine.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - reported in the figures, never hidden
            errors.append(str(e))
        finally:
            conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
    return {
        "sentences_per_s": len(texts) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * p95(latencies),
    }


def post_timed(port: int, body: dict[str, Any], timeout_s: float = 600) -> float:
    """Seconds one request took, on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        t0 = time.perf_counter()
        post_json(conn, "/v1/embeddings", body)
        return time.perf_counter() - t0
    finally:
        conn.close()


def small_requests(
    port: int, texts: list[str], stop: threading.Event | None = None, count: int = 0, pause_s: float = 0.02
) -> list[float]:
    """Latencies (seconds) of one client sending one short text a request, ``pause_s`` apart: ``count`` requests,
    or until ``stop`` is set (at least one)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    latencies: list[float] = []
    try:
        while (stop is None and len(latencies) < count) or (stop is not None and not (latencies and stop.is_set())):
            text = texts[len(latencies) % len(texts)]
            t0 = time.perf_counter()
            post_json(conn, "/v1/embeddings", {"input": [text], "encoding_format": "base64"})
            latencies.append(time.perf_counter() - t0)
            time.sleep(pause_s)
    finally:
        conn.close()
    return latencies


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile (of two values, the larger)."""
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]
