"""Restart policies against the real daemon: SIGKILLed workers come back; crash loops back off and give up."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import embed

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache


def dep(env: Env, name: str) -> dict[str, Any]:
    return {d["name"]: d for d in env.ps("-a")}[name]


def test_on_failure_brings_a_killed_worker_back(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "phoenix", "--restart", "on-failure", check=True)
    first = dep(env, "phoenix")
    for n in (1, 2):
        old_pid = dep(env, "phoenix")["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(
            lambda n=n, old=old_pid: (
                (d := dep(env, "phoenix"))["status"] == "running" and d["restart_count"] == n and d["pid"] != old
            ),
            timeout=60,
            interval=0.2,
        )
    again = dep(env, "phoenix")
    assert again["port"] == first["port"]
    assert embed(again["endpoint"], ["back again"]).shape == (1, 32)
    assert "(2 restarts)" in env.cli("ps", check=True).stdout
    logs = env.cli("logs", "phoenix", check=True).stdout
    assert logs.count("[tursid] restarting") == 2


def test_crash_loop_backs_off_and_gives_up(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "doomed", "--restart", "on-failure:2", check=True)
    d = dep(env, "doomed")
    (Path(d["artifact_path"]) / "model.onnx").unlink()  # every restart now fails while loading
    os.kill(d["pid"], signal.SIGKILL)
    wait_for(lambda: dep(env, "doomed")["status"] == "failed", timeout=60, interval=0.2)
    final = dep(env, "doomed")
    assert final["restart_count"] == 2
    logs = env.cli("logs", "doomed", check=True).stdout
    assert "in 0.1s" in logs
    assert "in 0.2s" in logs  # doubling backoff
    assert "gave up: policy on-failure:2 after 2 restarts" in logs
    assert "model failed to load" in logs


def test_down_is_never_undone_by_a_policy(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "stubborn", "--restart", "always", check=True)
    env.cli("down", "stubborn", check=True)
    assert env.ps("-a") == []


def test_always_comes_back_after_tursid_restarts(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "keeper", "--restart", "always", check=True)
    env.cli("up", str(tiny_bert), "--name", "once", check=True)
    port = dep(env, "keeper")["port"]
    assert daemon.terminate() == 0  # SIGTERM stops both workers
    DaemonProc(env).start()
    wait_for(lambda: dep(env, "keeper")["status"] == "running", timeout=60, interval=0.2)
    assert dep(env, "keeper")["port"] == port
    assert dep(env, "once")["status"] == "exited"  # policy "no": stays down
    assert embed(dep(env, "keeper")["endpoint"], ["still serving"]).shape == (1, 32)
