"""schemathesis against a live tursid and live workers (embeddings, chat): every generated request, valid or not,
gets a documented answer: no 5xx, responses (errors included, as problem+json) match the OpenAPI documents."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import free_port

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def schemathesis(base: str, examples: int = 30) -> str:
    cli = Path(sys.executable).parent / "schemathesis"
    proc = subprocess.run(
        [
            str(cli),
            "run",
            f"{base}/openapi.json",
            "-c",
            CHECKS,
            "-n",
            str(examples),
            "--request-timeout",
            "60",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail
    print(next(line for line in proc.stdout.splitlines() if "generated" in line and "passed" in line).strip())
    return tail


def test_control_api_matches_its_openapi(env: Env) -> None:
    port = free_port()
    env.home.mkdir(parents=True)
    daemon = DaemonProc(
        env, [sys.executable, "-m", "tursi.daemon", "--listen", f"127.0.0.1:{port}", "--no-auth", "--no-tls"]
    ).start()
    base = f"http://127.0.0.1:{port}"
    doc = json.loads(urllib.request.urlopen(base + "/openapi.json", timeout=10).read())
    assert doc["info"]["title"].startswith("Tursi control API")
    schemathesis(base)
    assert env.client.healthy()
    daemon.terminate()


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama"])
def test_inference_api_matches_its_openapi(
    env: Env, daemon: DaemonProc, model: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(model)
    if model == "tiny_bert":
        request.getfixturevalue("seeded_tiny_bert")  # the session's conversion: the API is the point here
    args = ["--ctx-size", "256"] if model == "tiny_llama" else []
    endpoint = env.cli("up", str(path), "--name", "api", *args, check=True).stdout.split(": ", 1)[1].strip()
    base = endpoint.removesuffix("/v1")
    wait_for(lambda: urllib.request.urlopen(base + "/ready", timeout=5).status == 200, timeout=30)
    schemathesis(base, examples=25)
    assert [d["status"] for d in env.ps()] == ["running"]  # the worker survived all of it
