"""tursid SIGKILLed while two deployments serve: after its restart both serve on the same ports, the
database is intact and no orphan worker is left."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import embed, free_port
from tursi.core.worker_settings import WorkerSettings

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache


def workers_of(home: Path) -> set[int]:
    found = set()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info.get("cmdline") or []
        if "tursi.worker" in cmd and any(str(home) in a for a in cmd) and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(p.pid)
    return found


def test_restore_after_sigkill(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "one", check=True)
    env.cli("up", str(tiny_bert), "--name", "two", check=True)
    before = {d["name"]: d for d in env.ps()}
    daemon.kill9()
    # a worker nobody owns (as if started right before the crash): the restarted tursid must kill it
    artifact = before["one"]["artifact_path"]
    settings = WorkerSettings("ghost", "x", artifact, "127.0.0.1", free_port())
    orphan = subprocess.Popen(
        [sys.executable, "-m", "tursi.worker", f"--settings={settings.to_json()}"],
        env=env.vars,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    DaemonProc(env).start()
    orphan.wait(timeout=20)
    assert orphan.returncode == -signal.SIGKILL
    after = {d["name"]: d for d in env.ps()}
    for name in ("one", "two"):
        assert after[name]["status"] == "running"
        assert after[name]["port"] == before[name]["port"]
        assert after[name]["pid"] == before[name]["pid"]  # re-adopted, not restarted
        assert embed(after[name]["endpoint"], ["still here"]).shape == (1, 32)
    with sqlite3.connect(env.home / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert workers_of(env.home) == {before["one"]["pid"], before["two"]["pid"]}
    env.cli("down", "--all", check=True)
    wait_for(lambda: not workers_of(env.home), timeout=20)
