"""/metrics on a worker and on tursid parse with prometheus_client's text parser and count what happened."""

from __future__ import annotations

import http.client
import json
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import embed, post

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache

# a path whose percent-decoded form, used as a label, would write its own lines into /metrics (the
# second one breaking tursid's parser of the page), and one with a double quote
FORGING_PATHS = [
    "/v1/x%22%7D%201%0Atursi_requests_total%7Broute%3D%22forged%22%7D%20zz%0Ay",
    "/v1/quote%22d",
    "/v1/back%5Cslash%0A",
]


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_worker_and_daemon_metrics_parse(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    proc = env.cli("up", str(tiny_bert), "--name", "m", "--rate-limit", "3/minute", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    for _ in range(3):
        embed(endpoint, ["count me"])
    assert post(endpoint + "/embeddings", {"input": "over"})[0] == 429
    with urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics", timeout=10) as r:
        fams = families(r.read().decode())
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in fams["tursi_requests"].samples}
    assert requests[("/v1/embeddings", "200")] == 3
    assert requests[("/v1/embeddings", "429")] == 1
    hist = fams["tursi_request_duration_seconds"]
    assert hist.type == "histogram"
    count = next(s.value for s in hist.samples if s.name.endswith("_count") and s.labels["route"] == "/v1/embeddings")
    assert count == 4
    inf = next(s.value for s in hist.samples if s.labels.get("le") == "+Inf" and s.labels["route"] == "/v1/embeddings")
    assert inf == count
    assert next(iter(fams["tursi_rate_limited"].samples)).value == 1
    text = env.client._send("GET", "/metrics").read().decode()
    daemon_fams = families(text)
    states = {s.labels["state"]: s.value for s in daemon_fams["tursi_deployments"].samples}
    assert states["running"] == 1
    assert [s.labels["deployment"] for s in daemon_fams["tursi_restarts"].samples] == ["m"]
    _unmatched_paths_keep_metrics_bounded(env, endpoint)


def _unmatched_paths_keep_metrics_bounded(env: Env, endpoint: str) -> None:
    """Any client picks the path: 300 random /v1/<path> POSTs (429 here) leave one 'unmatched' series, the page
    still parses, and tursid's sampler keeps counting the deployment's requests."""
    host, port = endpoint.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    paths = FORGING_PATHS + [f"/v1/{uuid.uuid4().hex}" for _ in range(300 - len(FORGING_PATHS))]
    for path in paths:
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 429
    conn.close()
    with urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert len(text) < 20_000  # bounded: it does not grow with the number of distinct paths
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families(text)["tursi_requests"].samples}
    assert requests == {("/v1/embeddings", "200"): 3, ("/v1/embeddings", "429"): 1, ("unmatched", "429"): 300}
    durations = families(text)["tursi_request_duration_seconds"].samples
    assert {s.labels["route"] for s in durations} == {"/v1/embeddings", "unmatched"}

    def sampled_requests() -> bool:
        snap = json.loads(env.cli("stats", "--no-stream", "--format", "json", check=True).stdout)
        return snap["deployments"][0]["requests"] == 304

    wait_for(sampled_requests, timeout=15, interval=0.5)  # the sampler read the page: it is not stuck on it


def test_stats_under_load(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    import json
    import threading

    from tests.conftest import wait_for

    proc = env.cli("up", str(tiny_bert), "--name", "busy", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            embed(endpoint, ["some load " * 20] * 8)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:

        def busy_row() -> dict | None:
            snap = json.loads(env.cli("stats", "--no-stream", "--format", "json", check=True).stdout)
            row = snap["deployments"][0]
            ok = row["cpu_percent"] > 0 and (row["requests_per_s"] or 0) > 0 and row["p50_s"] is not None
            return row if ok else None

        row = wait_for(busy_row, timeout=30, interval=0.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert row["mem_bytes"] > 0
    assert row["tokens_per_s"] > 0
    assert row["p95_s"] >= row["p50_s"]
    table = env.cli("stats", "--no-stream", check=True).stdout
    assert table.splitlines()[0].split()[-6:] == ["REQ/S", "P50", "P95", "TOK/S", "429", "REQUESTS"]
