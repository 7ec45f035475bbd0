"""Per-client token buckets in a real worker: 1000 concurrent requests, 429 + Retry-After, independent clients."""

from __future__ import annotations

import http.client
import json
import math
import secrets
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProc, Env, wait_for


def call(endpoint: str, key: str | None = None, source: str = "") -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST /v1/embeddings, presenting ``key`` as a Bearer token, from the local address ``source``."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    host, port = endpoint.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0) if source else None)
    try:
        conn.request("POST", "/v1/embeddings", body=json.dumps({"input": "hi"}).encode(), headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.headers), json.loads(r.read())
    finally:
        conn.close()


def test_rate_limit_per_client(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    proc = env.cli("up", str(tiny_bert), "--name", "limited", "--rate-limit", "10/minute", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    (dep,) = env.ps()
    assert dep["options"]["rate_limit"] == "10/minute"
    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: call(endpoint), range(1000)))
    elapsed = time.monotonic() - t0
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) + len(limited) == 1000
    assert len(ok) == 10 + math.floor(elapsed / 6)  # 10/minute refills one request every 6 s
    status, headers, body = limited[-1]
    assert body["code"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 6
    assert headers["X-RateLimit-Limit"] == "10"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) > 0
    assert ok[0][1]["X-RateLimit-Limit"] == "10"
    # health, readiness and metrics are never limited
    for path in ("/health", "/ready", "/metrics"):
        with urllib.request.urlopen(endpoint.removesuffix("/v1") + path, timeout=10) as r:
            assert r.status == 200
    with urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics", timeout=10) as r:
        assert f'tursi_rate_limited_total{{deployment="limited"}} {len(limited)}' in r.read().decode()
    # without an API key on the deployment a Bearer token names no one: a fresh random one per request
    # draws on this address's bucket (at most the one token that refills meanwhile), not on a new one
    assert [call(endpoint, key=secrets.token_hex(16))[0] for _ in range(20)].count(200) <= 1
    # another client (another address) has its own bucket
    assert call(endpoint, source="127.0.0.2")[0] == 200
    # within Retry-After (<= 6 s) the first client passes again; refused polls cost no tokens
    assert 1 <= int(call(endpoint)[1].get("Retry-After", "0")) <= 6
    assert wait_for(lambda: call(endpoint)[0] == 200, timeout=10, interval=0.5)


def test_malformed_rate_limit_is_a_cli_error(env: Env, daemon: DaemonProc) -> None:
    proc = env.cli("up", "minilm", "--rate-limit", "lots")
    assert proc.returncode == 64
    assert "--rate-limit 'lots' is not N/second|minute|hour" in proc.stderr
