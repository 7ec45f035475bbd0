"""Per-client token buckets in a real worker: 1000 concurrent requests, 429 + Retry-After, independent clients."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProc, Env, wait_for


def call(endpoint: str, key: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(endpoint + "/embeddings", data=json.dumps({"input": "hi"}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


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
    # another client (its own API key) has its own bucket
    assert call(endpoint, key="client-b")[0] == 200
    # health, readiness and metrics are never limited
    for path in ("/health", "/ready", "/metrics"):
        with urllib.request.urlopen(endpoint.removesuffix("/v1") + path, timeout=10) as r:
            assert r.status == 200
    with urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics", timeout=10) as r:
        assert f'tursi_rate_limited_total{{deployment="limited"}} {len(limited)}' in r.read().decode()
    # within Retry-After (<= 6 s) the first client passes again; refused polls cost no tokens
    assert 1 <= int(call(endpoint)[1].get("Retry-After", "0")) <= 6
    assert wait_for(lambda: call(endpoint)[0] == 200, timeout=10, interval=0.5)


def test_malformed_rate_limit_is_a_cli_error(env: Env, daemon: DaemonProc) -> None:
    proc = env.cli("up", "minilm", "--rate-limit", "lots")
    assert proc.returncode == 64
    assert "--rate-limit 'lots' is not N/second|minute|hour" in proc.stderr
