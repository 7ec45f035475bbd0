"""Health checks against the real daemon: starting -> healthy -> unhealthy (frozen worker) -> healthy, and
--restart-on-unhealthy."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env, wait_for

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache

FAST = ["--health-interval", "0.3", "--health-timeout", "0.5", "--health-retries", "2"]


def dep(env: Env, name: str) -> dict[str, Any]:
    return {d["name"]: d for d in env.ps("-a")}[name]


def test_states_follow_the_worker(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "h", *FAST, check=True)
    wait_for(lambda: dep(env, "h")["health"] == "healthy", timeout=20)
    assert "(healthy)" in env.cli("ps", check=True).stdout
    pid = dep(env, "h")["pid"]
    os.kill(pid, signal.SIGSTOP)  # a frozen worker: /ready stops answering
    try:
        wait_for(lambda: dep(env, "h")["health"] == "unhealthy", timeout=20)
        assert dep(env, "h")["pid"] == pid  # Docker's default: unhealthy is reported, not restarted
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: dep(env, "h")["health"] == "healthy", timeout=20)
    kinds = [e["detail"] for e in env.client.request("GET", "/v1/deployments/h")["events"] if e["kind"] == "health"]
    assert kinds[:4] == ["starting", "healthy", "unhealthy", "healthy"]


def test_restart_on_unhealthy(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "r", *FAST, "--restart-on-unhealthy", check=True)
    wait_for(lambda: dep(env, "r")["health"] == "healthy", timeout=20)
    pid = dep(env, "r")["pid"]
    os.kill(pid, signal.SIGSTOP)
    wait_for(
        lambda: (d := dep(env, "r"))["restart_count"] == 1 and d["status"] == "running" and d["pid"] != pid,
        timeout=40,
        interval=0.3,
    )
    logs = env.cli("logs", "r", check=True).stdout
    assert "unhealthy and --restart-on-unhealthy" in logs
