"""/metrics on a worker and on tursid parse with prometheus_client's text parser and count what happened."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import embed, post


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
