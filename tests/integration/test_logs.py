"""Logs: rotation keeps files bounded while the worker keeps writing; --since and --timestamps."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DaemonProc, Env, wait_for


def test_rotation_since_and_timestamps(env: Env, tiny_bert: Path) -> None:
    env.vars.update({"TURSI_LOG_MAX_BYTES": "4000", "TURSI_LOG_FILES": "2"})
    DaemonProc(env).start()
    env.cli("up", str(tiny_bert), "--name", "chatty", check=True)
    log = env.home / "logs" / "chatty.log"
    with log.open("a") as fh:  # the worker's stdout is this file: append as a chatty model would
        for i in range(100):
            fh.write(f"2020-01-01T00:00:00+0000 noisy line {i:03d} " + "." * 60 + "\n")
    wait_for(lambda: (env.home / "logs" / "chatty.log.1").exists() and log.stat().st_size <= 4000, timeout=20)
    with log.open("a") as fh:
        fh.write("2099-01-01T00:00:00+0000 from the future\n")
    out = env.cli("logs", "chatty", check=True).stdout.splitlines()
    assert "noisy line 099" in "\n".join(out)  # rotated lines are still shown, in order
    assert out[-1] == "2099-01-01T00:00:00+0000 from the future"
    assert env.cli("logs", "chatty", "--since", "2098-12-31T00:00:00Z", check=True).stdout == (
        "2099-01-01T00:00:00+0000 from the future\n"
    )
    stamped = env.cli("logs", "chatty", "--tail", "1", "--timestamps", check=True).stdout
    assert stamped.startswith("2099-01-01T00:00:00Z ")
    assert env.cli("logs", "chatty", "--since", "whenever").returncode == 64
    total = sum(p.stat().st_size for p in (env.home / "logs").glob("chatty.log*"))
    assert total <= 3 * 4000 + 200  # current + 2 rotated, each bounded
    env.cli("down", "chatty", check=True)
    assert not list((env.home / "logs").glob("chatty.log*"))
