"""SIGTERM to tursid drains in-flight requests (within the grace period) before workers stop."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import free_port


def test_sigterm_lets_an_inflight_generation_finish(env: Env, daemon: DaemonProc) -> None:
    port = free_port()
    env.cli("up", "smollm2", "--port", str(port), check=True)
    result: dict[str, Any] = {}

    def generate() -> None:
        body = {"prompt": "Once upon a time", "max_tokens": 120, "temperature": 0.8, "seed": 1}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            result["status"], result["body"] = r.status, json.loads(r.read())

    client = threading.Thread(target=generate)
    client.start()
    wait_for(lambda: _generated(port) > 5, timeout=20, interval=0.05)  # the generation is under way
    assert daemon.terminate() == 0
    client.join(timeout=60)
    assert result["status"] == 200
    assert result["body"]["usage"]["completion_tokens"] > 5  # finished, not cut off


def _generated(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("tursi_generated_tokens_total{"):
                    return float(line.rsplit(" ", 1)[1])
    except OSError:
        return 0.0
    return 0.0
