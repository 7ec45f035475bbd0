"""Fault injection at every durability boundary (tursi/core/failpoints.py): the process dies there (SIGKILL, as power
loss or the OOM killer would do it), and afterwards no half-made artifact is visible, the database passes
PRAGMA integrity_check, and a retry succeeds. A full disk gives a clear error and leaves no temporary files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env, stop_everything_in, wait_for


def arm(env: Env, **points: str) -> None:
    (env.home / "failpoints.json").write_text(json.dumps({k.replace("__", "."): v for k, v in points.items()}))


def disarm(env: Env) -> None:
    (env.home / "failpoints.json").unlink(missing_ok=True)


def visible_artifacts(env: Env) -> list[str]:
    root = env.home / "artifacts"
    # .loaded holds the origin records of loaded artifacts (one per published key), not an artifact
    return sorted(p.name for p in root.iterdir() if p.name != ".loaded") if root.exists() else []


def integrity_ok(env: Env) -> bool:
    with sqlite3.connect(env.home / "state.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def start(env: Env) -> DaemonProc:
    env.vars["TURSI_FAILPOINTS"] = "1"
    return DaemonProc(env).start()


@pytest.mark.parametrize("point", ["convert__after_export", "convert__before_publish"])
def test_converter_killed_mid_conversion(env: Env, tiny_bert: Path, point: str) -> None:
    start(env)
    arm(env, **{point: "kill"})
    proc = env.cli("up", str(tiny_bert), "--name", "m")
    assert proc.returncode == 65, proc.stderr
    assert "killed" in proc.stderr
    assert env.client.healthy()  # tursid outlived its converter
    assert visible_artifacts(env) == []  # the staging directory went with it, nothing half-made under a key
    [dep] = env.ps("-a")  # the attempt is kept as a failed deployment with its reason
    assert (dep["name"], dep["status"], dep["artifact_key"]) == ("m", "failed", "")
    assert "killed" in dep["reason"]
    assert "Failed" in env.cli("ps", "-a", check=True).stdout
    assert "conversion failed" in env.cli("logs", "m", check=True).stdout
    assert integrity_ok(env)
    disarm(env)
    env.cli("up", str(tiny_bert), "--name", "m", check=True)  # the failed record does not hold its name
    assert [(d["name"], d["status"]) for d in env.ps("-a")] == [("m", "running")]


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A cgroup v1 memory controller group this test may fill (root on Linux); skipped where none can be made."""
    group = Path("/sys/fs/cgroup/memory") / f"tursi-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(200 * 2**20))
    except OSError as e:
        pytest.skip(f"cannot make a memory cgroup here: {e}")
    yield group
    wait_for(lambda: not (group / "cgroup.procs").read_text().split(), timeout=20)
    group.rmdir()


def test_converter_killed_by_the_oom_killer(env: Env, tiny_bert: Path, memory_cgroup: Path) -> None:
    # tursid (~40 MiB) runs in a 200 MiB cgroup; its converter imports torch and the kernel's OOM killer takes it.
    inside = ["sh", "-c", f'echo $$ > {memory_cgroup}/cgroup.procs && exec "$0" -m tursi.daemon', sys.executable]
    try:
        DaemonProc(env, inside).start()
        proc = env.cli("up", str(tiny_bert), "--name", "m")
        assert proc.returncode == 65, proc.stderr
        assert "out-of-memory" in proc.stderr
        assert "Traceback" not in proc.stderr
        oom = dict(line.split() for line in (memory_cgroup / "memory.oom_control").read_text().splitlines())
        assert int(oom["oom_kill"]) >= 1  # the kernel really killed for memory
        assert env.client.healthy()  # tursid is alive and answers
        [dep] = env.ps("-a")
        assert dep["status"] == "failed"
        assert "out-of-memory" in dep["reason"]
        assert visible_artifacts(env) == []
        assert integrity_ok(env)
        (memory_cgroup / "memory.limit_in_bytes").write_text("-1")  # more memory: the retry converts and serves
        env.cli("up", str(tiny_bert), "--name", "m", check=True)
        assert [(d["name"], d["status"]) for d in env.ps("-a")] == [("m", "running")]
    finally:
        stop_everything_in(env.home)


def test_tursid_killed_before_a_loaded_bundle_is_published(
    env: Env, device_env: Env, tiny_bert: Path, tmp_path: Path
) -> None:
    DaemonProc(env).start()
    bundle = tmp_path / "tiny.tursi"
    env.cli("build", str(tiny_bert), "-o", str(bundle), check=True)
    device = start(device_env)
    arm(device_env, load__before_publish="kill")
    proc = device_env.cli("load", str(bundle))
    assert proc.returncode == 69, proc.stderr  # the daemon vanished mid-request
    assert "Traceback" not in proc.stderr
    wait_for(lambda: device.proc is not None and device.proc.poll() is not None, timeout=10)
    assert not [n for n in visible_artifacts(device_env) if not n.startswith(".tmp-")]  # no key directory
    disarm(device_env)
    start(device_env)
    assert visible_artifacts(device_env) == []  # the leftover staging directory is swept at start
    assert integrity_ok(device_env)
    device_env.cli("load", str(bundle), check=True)
    assert len(visible_artifacts(device_env)) == 1


@pytest.mark.usefixtures("seeded_tiny_bert")  # the point is the commit after conversion
@pytest.mark.parametrize(("point", "left"), [("up__before_commit", []), ("up__after_commit", ["created"])])
def test_tursid_killed_around_the_deployment_commit(env: Env, tiny_bert: Path, point: str, left: list[str]) -> None:
    daemon = start(env)
    env.cli("build", str(tiny_bert), "-o", str(env.home.parent / "x.tursi"), check=True)  # convert first
    arm(env, **{point: "kill"})
    proc = env.cli("up", str(tiny_bert), "--name", "m")
    assert proc.returncode == 69, proc.stderr
    wait_for(lambda: daemon.proc is not None and daemon.proc.poll() is not None, timeout=10)
    disarm(env)
    start(env)
    assert integrity_ok(env)
    assert [d["status"] for d in env.ps("-a")] == left  # the truth: never started, or nothing at all
    if left:
        env.cli("down", "m", check=True)
    env.cli("up", str(tiny_bert), "--name", "m", check=True)
    assert [d["status"] for d in env.ps()] == ["running"]


def test_full_disk_is_a_clear_error_with_nothing_left(env: Env, tiny_bert: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    try:
        small = Env(mnt / "home", {**env.vars, "TURSI_HOME": str(mnt / "home")})
        DaemonProc(small).start()
        proc = small.cli("up", str(tiny_bert), "--name", "m")
        assert proc.returncode == 65, proc.stderr
        assert "No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert visible_artifacts(small) == []  # no staging directory, no temporary files
        assert small.client.healthy()
        bundle = tmp_path / "big.tursi"
        DaemonProc(env).start()
        env.cli("build", str(tiny_bert), "-o", str(bundle), check=True)
        loaded = small.cli("load", str(bundle))
        assert loaded.returncode != 0
        assert "no space left" in loaded.stderr.lower()
        assert visible_artifacts(small) == []  # the spooled upload is gone too
        assert small.client.healthy()
        small.cli("down", "--all")
    finally:
        from tests.conftest import stop_everything_in

        stop_everything_in(mnt / "home")
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
