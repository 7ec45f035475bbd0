"""`tursi context`: a named daemon is used when neither --daemon nor TURSI_HOST says otherwise."""

from __future__ import annotations

import stat

from tests.conftest import DaemonProc, Env


def test_contexts(env: Env, daemon: DaemonProc) -> None:
    config = env.home.parent / "config"
    elsewhere = {**env.vars, "XDG_CONFIG_HOME": str(config), "TURSI_HOME": str(env.home.parent / "empty-home")}
    other = Env(env.home.parent / "empty-home", elsewhere)  # its own local socket does not exist
    assert other.cli("ps").returncode == 69  # no daemon there, autostart off
    sock = f"unix://{env.home / 'tursid.sock'}"
    assert other.cli("context", "create", "lab", "--host", sock, check=True).stdout.strip() == "lab"
    assert other.cli("context", "create", "lab", "--host", sock).returncode == 73  # exists
    assert other.cli("context", "create", "bad", "--host", "ftp://x").returncode == 64
    clear = other.cli("context", "create", "lan", "--host", "http://192.0.2.7:8765", "--token", "tct_" + "x" * 40)
    assert clear.returncode == 77, clear.stderr  # a token would cross the LAN in clear text
    assert "clear text" in clear.stderr
    assert "lan" not in other.cli("context", "ls", check=True).stdout
    other.cli("context", "create", "local-http", "--host", "http://127.0.0.1:8765", "--token", "t" * 40, check=True)
    other.cli("context", "rm", "local-http", check=True)  # loopback over http (a --no-tls tursid) stays possible
    other.cli("context", "use", "lab", check=True)
    listing = other.cli("context", "ls", check=True).stdout
    assert "lab *" in listing
    assert sock in listing
    assert other.cli("ps", check=True).stdout.startswith("NAME")  # reached through the context
    assert other.cli("--daemon", "unix:///nonexistent.sock", "ps").returncode == 69  # --daemon wins
    assert stat.S_IMODE((config / "tursi" / "contexts.json").stat().st_mode) == 0o600
    other.cli("context", "rm", "lab", check=True)
    assert "default *" in other.cli("context", "ls", check=True).stdout
    assert other.cli("ps").returncode == 69
    assert other.cli("context", "use", "ghost").returncode == 66
