"""What the CLI does on the client's side: a relative model path means the shell's folder, the token never goes
in clear to another host, and a tursid the CLI starts gets none of the shell's secrets and a bounded log."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import CLI, DaemonProc, Env, wait_for


def test_relative_model_path_is_the_shells_not_tursids(env: Env, daemon: DaemonProc, tmp_path: Path) -> None:
    shell = tmp_path / "shell"  # tursid runs in the test's working directory; the CLI runs here
    (shell / "models" / "mine").mkdir(parents=True)  # a folder that is not a model: tursid says what it looked at
    proc = subprocess.run(
        [*CLI, "up", "models/mine"], env=env.vars, cwd=shell, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 64, proc.stderr  # not 66 "not found": tursid looked in the shell's folder
    assert f"{shell / 'models' / 'mine'} has no config.json" in proc.stderr
    hub = subprocess.run([*CLI, "up", "org/no-such-model"], env=env.vars, cwd=shell, capture_output=True, text=True)
    assert hub.returncode != 0
    assert str(shell) not in hub.stderr  # a hub id that is no local path is sent as typed


def test_token_is_never_sent_in_clear_to_another_host(env: Env) -> None:
    secret = "tct_never_in_clear_text"
    proc = subprocess.run(
        [*CLI, "--daemon", "http://192.0.2.1:8765", "ps"],  # TEST-NET-1: no such host answers anyway
        env={**env.vars, "TURSI_TOKEN": secret},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 77, proc.stderr
    assert "refusing to send the control token to http://192.0.2.1:8765 over plain http://" in proc.stderr
    assert secret not in proc.stderr


def autostart(env: Env, **extra: str) -> int:
    """Run `tursi ps` with autostart on, so the CLI starts tursid; its pid."""
    del env.vars["TURSI_NO_AUTOSTART"]
    env.vars.update(extra)
    env.cli("ps", check=True)
    return int((env.home / "tursid.lock").read_text().strip())


def test_autostarted_tursid_gets_none_of_the_shells_secrets(env: Env) -> None:
    pid = autostart(env, TURSI_TOKEN="tct_for_a_remote_daemon", OPENAI_API_KEY="sk-not-for-tursid")
    raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
    environ = dict(item.split("=", 1) for item in raw if "=" in item)
    assert "TURSI_TOKEN" not in environ
    assert "OPENAI_API_KEY" not in environ
    assert environ["TURSI_HOME"] == str(env.home)
    assert environ["TURSI_SAMPLE_INTERVAL"] == env.vars["TURSI_SAMPLE_INTERVAL"]  # its own settings still reach it
    assert environ["PATH"] == env.vars["PATH"]


def test_autostarted_tursid_log_is_bounded(env: Env) -> None:
    env.home.mkdir(parents=True)
    log = env.home / "tursid.log"
    log.write_text("an old line from an earlier tursid\n" * 3000)  # ~100 KiB, over the limit below
    autostart(env, TURSI_LOG_MAX_BYTES="4096")
    old = env.home / "tursid.log.1"
    wait_for(lambda: old.is_file() and log.stat().st_size <= 4096, timeout=30)  # rotated by tursid itself
    assert old.read_text().startswith("an old line")
