"""A real deployment of a tiny random BERT: up, serve, ps, logs, stats, crash, daemon restart, down."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import CLI, DaemonProc, Env, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def embed(endpoint: str, texts: list[str], model: str | None = None) -> np.ndarray:
    body_in: dict[str, Any] = {"input": texts} if model is None else {"input": texts, "model": model}
    status, body = post(f"{endpoint}/embeddings", body_in)
    assert status == 200, body
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


def test_up_converts_with_progress_then_serves(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    port = free_port()
    proc = env.cli("up", str(tiny_bert), "--name", "tiny", "--port", str(port), check=True)
    assert proc.stdout.strip() == f"tiny is ready: http://127.0.0.1:{port}/v1"
    assert "[1/4] exporting to ONNX" in proc.stderr  # progress was shown
    assert embed(f"http://127.0.0.1:{port}/v1", ["converted here"]).shape == (1, 32)


@pytest.fixture
def tiny_up(env: Env, seeded_tiny_bert: None, daemon: DaemonProc, tiny_bert: Path) -> dict[str, Any]:
    """tiny_bert deployed from the session's converted artifact (conversion itself: the test above)."""
    port = free_port()
    proc = env.cli("up", str(tiny_bert), "--name", "tiny", "--port", str(port), check=True)
    assert proc.stdout.strip() == f"tiny is ready: http://127.0.0.1:{port}/v1"
    (dep,) = env.ps()
    return dep


def test_up_serves_embeddings_with_correct_pooling(env: Env, tiny_up: dict[str, Any]) -> None:
    endpoint = tiny_up["endpoint"]
    batch = embed(endpoint, ["a short one", "a much longer sentence that needs padding in the batch", "x"])
    assert batch.shape == (3, 32)
    alone = embed(endpoint, ["a short one"], model="tiny")
    # padding in a batch must not change a sentence's embedding (mask-aware mean pooling)
    # (int8 activations are scaled per batch, so equal up to a small rounding difference)
    cos = float(batch[0] @ alone[0] / (np.linalg.norm(batch[0]) * np.linalg.norm(alone[0])))
    other = float(batch[0] @ batch[1] / (np.linalg.norm(batch[0]) * np.linalg.norm(batch[1])))
    assert cos > 0.99
    assert 1 - cos < 0.1 * (1 - other)
    # no sentence-transformers Normalize module in this folder: vectors are not L2-normalised
    assert not np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-3)


BAD_INFERENCE_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"input": []}, 400, "invalid_request"),
    ({"input": ""}, 400, "invalid_request"),
    ({"input": [1, 2, 3]}, 400, "invalid_request"),
    ({"input": "hi", "encoding_format": "int8"}, 400, "invalid_request"),
    ({"input": "hi", "model": "someone-else"}, 404, "model_not_found"),
    ({"input": ["x"] * 2049}, 400, "invalid_request"),
]


def test_bad_inference_requests_are_400s(tiny_up: dict[str, Any]) -> None:
    """One deployment answers the whole table (a conversion per case cost ~10 s each)."""
    for body, status, code in BAD_INFERENCE_REQUESTS:
        got_status, problem = post(f"{tiny_up['endpoint']}/embeddings", body)
        assert (got_status, problem["code"]) == (status, code), str(body)[:80]
        # the worker keeps serving
        assert embed(tiny_up["endpoint"], ["still alive"]).shape == (1, 32)


def test_second_up_reuses_the_artifact_and_names_conflict(env: Env, tiny_up: dict[str, Any], tiny_bert: Path) -> None:
    proc = env.cli("up", str(tiny_bert), "--name", "tiny2", check=True)
    assert "using cached artifact" in proc.stderr
    assert "exporting to ONNX" not in proc.stderr
    artifacts = [p for p in (env.home / "artifacts").iterdir() if not p.name.startswith(".")]
    assert len(artifacts) == 1
    names = sorted(d["name"] for d in env.ps())
    assert names == ["tiny", "tiny2"]
    dup = env.cli("up", str(tiny_bert), "--name", "tiny")
    assert dup.returncode == 73
    assert "already in use" in dup.stderr
    clash = env.cli("up", str(tiny_bert), "--port", str(tiny_up["port"]))
    assert clash.returncode == 73
    assert f"port {tiny_up['port']}" in clash.stderr
    assert len(env.ps()) == 2


def test_ps_logs_stats_show_the_deployment(env: Env, tiny_up: dict[str, Any]) -> None:
    embed(tiny_up["endpoint"], ["count me"])
    table = env.cli("ps", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "MODEL", "FORMAT", "QUANT"]
    assert table[1].split()[0] == "tiny"
    assert "Up" in table[1]
    assert "int8-dynamic" in table[1]
    assert tiny_up["mem_bytes"] > 10 * 2**20
    logs = env.cli("logs", "tiny", check=True).stdout
    assert "[tursid] started" in logs
    assert "model loaded" in logs
    assert "[tursid] ready" in logs
    assert env.cli("logs", "--tail", "1", check=True).stdout.count("\n") == 1  # the only deployment by default

    def sampled() -> dict[str, Any] | None:
        snap = json.loads(env.cli("stats", "--no-stream", "--format", "json", check=True).stdout)
        rows = [d for d in snap["deployments"] if d["name"] == "tiny" and (d["requests"] or 0) >= 1]
        return snap if rows else None

    snap = wait_for(sampled, timeout=20, interval=0.3)
    (row,) = snap["deployments"]
    assert row["pid"] == tiny_up["pid"]
    assert row["mem_bytes"] > 0
    assert row["mem_limit_bytes"] > row["mem_bytes"]
    assert snap["system"]["mem_total_bytes"] > 0
    assert len(snap["system"]["load"]) == 3
    streaming = subprocess.Popen([*CLI, "stats", "--format", "json"], env=env.vars, stdout=subprocess.PIPE, text=True)
    try:
        samples = [json.loads(streaming.stdout.readline()) for _ in range(2)]
    finally:
        streaming.kill()
        streaming.wait()
    assert samples[1]["at"] > samples[0]["at"]  # a new sample each interval, not the same one repeated
    assert [d["name"] for d in samples[1]["deployments"]] == ["tiny"]
    text = env.cli("stats", "--no-stream", check=True).stdout
    assert text.splitlines()[0].split()[:3] == ["NAME", "PID", "CPU"]
    assert "SYSTEM" in text


def test_inspect_shows_plan_reasons_and_quality(env: Env, tiny_up: dict[str, Any]) -> None:
    info = json.loads(env.cli("inspect", "tiny", check=True).stdout)
    manifest = info["manifest"]
    assert manifest["plan"]["quantization"] == "int8-dynamic"
    assert manifest["plan"]["reasons"]["quantization"]
    assert "detected on this machine" in manifest["plan"]["reasons"]["hardware"]
    assert manifest["plan"]["params"]["hardware_target"] == "detected"
    assert manifest["source"]["digest"].startswith("sha256:")
    assert 0.5 < manifest["quality"]["mean"] <= 1.0
    assert "onnxruntime" in manifest["tools"]
    assert 0 < manifest["size_bytes"] < manifest["source"]["size_bytes"]  # int8 is smaller than the fp32 source
    assert [e["kind"] for e in info["events"]][:3] == ["created", "started", "ready"]


def test_logs_follow_streams_until_the_deployment_stops(env: Env, tiny_up: dict[str, Any]) -> None:
    follower = subprocess.Popen([*CLI, "logs", "tiny", "-f"], env=env.vars, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: (env.home / "logs" / "tiny.log").stat().st_size > 0)
    os.kill(tiny_up["pid"], signal.SIGKILL)
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert "[tursid] exited: code=137" in out


def test_killed_worker_shows_exited_and_others_keep_serving(env: Env, tiny_up: dict[str, Any], tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "other", check=True)
    os.kill(tiny_up["pid"], signal.SIGKILL)
    wait_for(lambda: {d["name"]: d for d in env.ps("-a")}["tiny"]["status"] == "exited")
    dead = {d["name"]: d for d in env.ps("-a")}["tiny"]
    assert dead["exit_code"] == 137
    assert [d["name"] for d in env.ps()] == ["other"]  # ps without -a hides it
    assert "Exited (137)" in env.cli("ps", "-a", check=True).stdout
    other = {d["name"]: d for d in env.ps()}["other"]
    assert embed(other["endpoint"], ["fine"]).shape == (1, 32)


def test_tursid_sigkill_then_restart_tells_the_truth(
    env: Env, daemon: DaemonProc, tiny_up: dict[str, Any], tiny_bert: Path
) -> None:
    env.cli("up", str(tiny_bert), "--name", "doomed", check=True)
    doomed = {d["name"]: d for d in env.ps()}["doomed"]
    daemon.kill9()
    os.kill(doomed["pid"], signal.SIGKILL)  # dies while tursid is down
    restarted = DaemonProc(env).start()
    with sqlite3.connect(env.home / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    deps = {d["name"]: d for d in env.ps("-a")}
    assert deps["tiny"]["status"] == "running"
    assert deps["tiny"]["pid"] == tiny_up["pid"]
    assert deps["doomed"]["status"] == "exited"
    assert embed(tiny_up["endpoint"], ["still here"]).shape == (1, 32)
    # an adopted worker can still be stopped, and its port is freed
    assert env.cli("down", "tiny", check=True).stdout.strip() == "tiny"
    assert port_is_free(tiny_up["port"])
    restarted.terminate()


def test_down_frees_the_port_and_empties_ps(env: Env, tiny_up: dict[str, Any]) -> None:
    assert env.cli("down", check=True).stdout.strip() == "tiny"
    assert port_is_free(tiny_up["port"])
    assert env.ps("-a") == []
    with pytest.raises(ProcessLookupError):
        os.kill(tiny_up["pid"], 0)
    assert not (env.home / "logs" / "tiny.log").exists()


def test_down_all(env: Env, tiny_up: dict[str, Any], tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "second", check=True)
    assert sorted(env.cli("down", "--all", check=True).stdout.split()) == ["second", "tiny"]
    assert env.ps("-a") == []


def test_sigterm_stops_workers_gracefully(env: Env, daemon: DaemonProc, tiny_up: dict[str, Any]) -> None:
    assert daemon.terminate() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(tiny_up["pid"], 0)
    assert port_is_free(tiny_up["port"])
    DaemonProc(env).start()
    (dep,) = env.ps("-a")
    assert dep["status"] == "exited"
    assert dep["reason"] == "tursid stopped"
