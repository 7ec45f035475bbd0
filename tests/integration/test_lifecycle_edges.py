"""Edges of `up` against one real tursid (module-scoped; its cache starts with the session's converted tiny BERT):
a second loopback address, a LAN bind without an API key, a model reference that looks like an option, two
concurrent ups of one name, and what a worker inherits from tursid's environment."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env, make_env, seed_artifacts, stop_everything_in
from tests.integration.test_lifecycle import embed

SECRETS = {"TURSI_TOKEN": "control-token-not-for-workers", "OPENAI_API_KEY": "sk-not-for-workers"}


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, tiny_bert_artifacts: Path
) -> Iterator[tuple[Env, DaemonProc]]:
    """tursid with secrets in its environment, started in a folder that holds a model folder named `--help`.
    Its cache holds the session's converted tiny_bert: the edges of serving are the point, not converting."""
    env = make_env(tmp_path_factory.mktemp("edges") / "home")
    seed_artifacts(env, tiny_bert_artifacts)
    cwd = tmp_path_factory.mktemp("daemon-cwd")
    (cwd / "--help").symlink_to(tiny_bert, target_is_directory=True)
    daemon_env = Env(env.home, {**env.vars, **SECRETS, "TURSI_READY_TIMEOUT": "60"})
    start_in_cwd = ["/bin/sh", "-c", 'cd "$1" && exec "$0" -m tursi.daemon', sys.executable, str(cwd)]
    daemon = DaemonProc(daemon_env, command=start_in_cwd).start()
    env.cli("up", str(tiny_bert), "--name", "base", check=True)
    yield env, daemon
    daemon.terminate()
    stop_everything_in(env.home)


def _down(env: Env, name: str) -> None:
    env.cli("down", name, check=True)


@pytest.fixture(scope="module")
def alias_dep(home: tuple[Env, DaemonProc], tiny_bert: Path) -> Iterator[dict[str, Any]]:
    env, _ = home
    proc = env.cli("up", str(tiny_bert), "--name", "alias", "--host", "127.0.0.2")
    assert proc.returncode == 0, proc.stderr
    (dep,) = [d for d in env.ps() if d["name"] == "alias"]
    yield dep
    _down(env, "alias")


def test_any_loopback_address_becomes_ready_and_serves(home: tuple[Env, DaemonProc], alias_dep: dict[str, Any]) -> None:
    env, _ = home
    assert alias_dep["endpoint"].startswith("http://127.0.0.2:")
    assert alias_dep["status"] == "running"
    assert embed(alias_dep["endpoint"], ["served on 127.0.0.2"]).shape == (1, 32)
    assert "WARNING" not in env.cli("ps", check=True).stderr  # loopback: nothing to warn about


def test_worker_environment_holds_no_secrets_of_tursid(home: tuple[Env, DaemonProc]) -> None:
    env, _ = home
    (base,) = [d for d in env.ps() if d["name"] == "base"]
    raw = Path(f"/proc/{base['pid']}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}
    assert not names & set(SECRETS)
    assert {"PATH", "TURSI_HOME"} <= names  # what it needs is still there


def test_lan_bind_without_api_key_warns_in_up_and_ps(home: tuple[Env, DaemonProc], tiny_bert: Path) -> None:
    env, _ = home
    up = env.cli("up", str(tiny_bert), "--name", "open", "--host", "0.0.0.0", check=True)
    assert "WARNING: open listens on 0.0.0.0" in up.stderr
    assert "without an API key" in up.stderr
    keyed = env.cli("up", str(tiny_bert), "--name", "keyed", "--host", "0.0.0.0", "--api-key", "auto", check=True)
    assert "WARNING" not in keyed.stderr
    try:
        ps = env.cli("ps", check=True)
        rows = {line.split()[0]: line for line in ps.stdout.splitlines()[1:]}
        assert "(open: no api key)" in rows["open"]
        assert "no api key" not in rows["keyed"]
        assert "no api key" not in rows["base"]
        assert ps.stderr.count("WARNING:") == 1
        assert "WARNING: open listens on 0.0.0.0" in ps.stderr
        (listed,) = [d for d in env.ps() if d["name"] == "open"]
        assert listed["warnings"]
        assert listed["warnings"][0].startswith("open listens on 0.0.0.0")
    finally:
        _down(env, "open")
        _down(env, "keyed")


def test_model_reference_that_looks_like_an_option_starts_and_serves(home: tuple[Env, DaemonProc]) -> None:
    """`--help` is a folder in tursid's working directory; the worker must take it as the reference, not an option."""
    env, _ = home
    events = list(env.client.stream_events("POST", "/v1/deployments", {"model": "--help", "name": "dashes"}))
    assert events[-1]["event"] == "ready", events[-1]
    dep = events[-1]["deployment"]
    try:
        assert dep["model"] == "--help"
        assert embed(dep["endpoint"], ["dashes are a value"]).shape == (1, 32)
    finally:
        _down(env, "dashes")


def _raw_up(sock_path: Path, body: dict[str, Any]) -> socket.socket:
    data = json.dumps(body).encode()
    head = (
        "POST /v1/deployments HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(str(sock_path))
    s.sendall(head.encode() + data)
    return s


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    with s:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_concurrent_up_of_one_name_one_wins_the_other_is_409(home: tuple[Env, DaemonProc], tiny_bert: Path) -> None:
    env, daemon = home
    sock = env.home / "tursid.sock"
    body = {"model": str(tiny_bert), "name": "twin"}
    first, second = _raw_up(sock, body), _raw_up(sock, body)  # both requests in flight before either is parsed
    answers = [_read_all(first), _read_all(second)]
    try:
        statuses = sorted(int(a.split(b" ", 2)[1]) for a in answers)
        assert statuses == [200, 409], answers
        ok = next(a for a in answers if a.startswith(b"HTTP/1.1 200"))
        refused = next(a for a in answers if a.startswith(b"HTTP/1.1 409"))
        assert b'"event": "ready"' in ok
        assert b'"event": "error"' not in ok
        assert b"deployment_exists" in refused
        assert b"application/problem+json" in refused
        assert [d["name"] for d in env.ps() if d["name"] == "twin"] == ["twin"]
        assert "IntegrityError" not in daemon.log()
        assert "up failed" not in daemon.log()
    finally:
        _down(env, "twin")
