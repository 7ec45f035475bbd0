"""A memory budget that fits one of two models: loading the other unloads the least recently used one (it goes
idle and loads again on its next request); with both pinned, `up` is a clear 503 `insufficient_memory` and nothing
is recorded. The budget decides, never the kernel's OOM killer: no worker dies of a signal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_gateway import daemon_with_gateway, request, status_of

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")


def budget_for_one(env: Env, tiny_bert: Path) -> int:
    """Room for one tiny-BERT worker and not two, by what one holds (measured on this machine) and by what tursid
    estimates before it has run: 1.4x the larger."""
    daemon = DaemonProc(env).start()
    try:
        env.cli("up", str(tiny_bert), "--name", "probe", check=True)
        (dep,) = env.ps()
        held = wait_for(lambda: env.ps()[0]["mem_bytes"], timeout=10)
        request(f"http://127.0.0.1:{dep['port']}", "POST", "/v1/embeddings", {"input": "warm up"})
        held = max(held, wait_for(lambda: env.ps()[0]["mem_bytes"], timeout=10))
        estimate = dep["mem_estimate_bytes"]
        need = int(1.4 * max(held, estimate))
        print(f"tiny BERT worker: holds {held / 2**20:.0f} MiB, estimated {estimate / 2**20:.0f} MiB")
        env.cli("down", "probe", check=True)
    finally:
        daemon.terminate()
    return need


@pytest.fixture
def one_model_budget(env: Env, tiny_bert: Path) -> Iterator[str]:
    env.vars["TURSI_MEMORY_BUDGET"] = str(budget_for_one(env, tiny_bert))
    with daemon_with_gateway(env) as base:
        yield base


def test_loading_a_second_model_unloads_the_least_recently_used(
    env: Env, one_model_budget: str, tiny_bert: Path
) -> None:
    gateway = one_model_budget
    env.cli("up", str(tiny_bert), "--name", "a", "--keep-alive", "forever", check=True)
    env.cli("up", str(tiny_bert), "--name", "b", "--keep-alive", "forever", check=True)
    assert (status_of(env, "a"), status_of(env, "b")) == ("idle", "running")
    assert "make room for b" in (next(d for d in env.ps("-a") if d["name"] == "a")["reason"] or "")
    status, headers, body = request(gateway, "POST", "/v1/embeddings", {"model": "a", "input": "x"})
    assert status == 200, body
    assert float(headers["X-Tursi-Load-Seconds"]) > 0
    assert (status_of(env, "a"), status_of(env, "b")) == ("running", "idle")
    print("\n" + env.cli("ps", "-a", check=True).stdout.strip())
    budget = env.ps()[0]["mem_budget_bytes"]
    assert sum(d["mem_bytes"] or 0 for d in env.ps() if d["status"] == "running") <= budget
    assert all((d.get("exit_code") or 0) < 128 for d in env.ps("-a"))  # stopped by tursid, never SIGKILLed


def test_with_both_pinned_up_is_a_clear_503_and_nothing_is_recorded(
    env: Env, one_model_budget: str, tiny_bert: Path
) -> None:
    env.cli("up", str(tiny_bert), "--name", "a", "--pin", check=True)
    refused = env.cli("up", str(tiny_bert), "--name", "b", "--pin")
    assert refused.returncode != 0
    assert "insufficient_memory" in refused.stderr or "needs" in refused.stderr
    assert "a " in refused.stderr  # names what is loaded
    assert "(pinned)" in refused.stderr
    assert [d["name"] for d in env.ps("-a")] == ["a"]
    print("\n" + refused.stderr.strip())
    assert status_of(env, "a") == "running"


def test_a_request_in_flight_on_a_deployments_own_port_keeps_it_loaded(
    env: Env, one_model_budget: str, tiny_bert: Path
) -> None:
    """Issue 28, defect 7: making room for a model ignored requests in flight straight to a deployment's own port
    (only the gateway's were counted), so a direct stream was cut when the gateway evicted its model. Now the
    worker's own count (its /metrics, as the sampler reads it) keeps it loaded, as it already did for keep-alive:
    the other load is a 503 `insufficient_memory` and the direct request completes."""
    import json
    import socket
    import time
    import urllib.request

    gateway = one_model_budget
    env.cli("up", str(tiny_bert), "--name", "a", "--keep-alive", "forever", check=True)
    env.cli("up", str(tiny_bert), "--name", "b", "--keep-alive", "forever", check=True)
    port = next(d for d in env.ps() if d["name"] == "b")["port"]
    body = json.dumps({"input": "a request that is still arriving"}).encode()
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as direct:
        direct.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])

        def in_flight() -> bool:
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return any(
                line.startswith("tursi_requests_in_flight{") and line.endswith("} 1") for line in page.splitlines()
            )

        wait_for(in_flight, timeout=10)
        time.sleep(1.5)  # the sampler (every 0.5 s here) has read it
        status, _, problem = request(gateway, "POST", "/v1/embeddings", {"model": "a", "input": "x"})
        assert (status, problem["code"]) == (503, "insufficient_memory"), problem
        assert (status_of(env, "a"), status_of(env, "b")) == ("idle", "running")
        direct.sendall(body[5:])
        answer = direct.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
