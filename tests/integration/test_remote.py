"""tursid over TCP: TLS with a self-signed certificate made at first start (clients pin its fingerprint or
trust it as a CA), a token shown once and stored hashed, 401 for a wrong or missing token, throttling of
repeated failures, rotation at once; non-loopback listens without a token or TLS refuse to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DAEMON, Env, wait_for
from tests.integration.test_lifecycle import free_port
from tursi.client.control import ControlClient
from tursi.core.errors import DaemonUnavailable, RateLimited, TlsMismatch, Unauthorized

CLI = [sys.executable, "-m", "tursi.cli"]


def start_tcp_daemon(env: Env, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    env.home.mkdir(parents=True, exist_ok=True)
    log = env.home / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen([*DAEMON, *args], env=env.vars, stderr=err, stdout=subprocess.DEVNULL)
    return proc, log


def said(log: Path, marker: str) -> str:
    """The word after ``marker`` in tursid's stderr, once it is there."""
    text = wait_for(lambda: marker in log.read_text() and log.read_text(), timeout=30)
    return text.split(marker, 1)[1].split()[0]


def test_tcp_control_with_tls_and_token(env: Env) -> None:
    port = free_port()
    proc, log = start_tcp_daemon(env, "--listen", f"127.0.0.1:{port}")
    try:
        token = said(log, "TURSI_TOKEN): ")
        fingerprint = said(log, "TLS certificate ")
        assert fingerprint.startswith("sha256:")
        stored = (env.home / "control-token.sha256").read_text()
        assert token not in stored
        assert oct((env.home / "control-token.sha256").stat().st_mode & 0o777) == "0o600"
        assert oct((env.home / "tls" / "tursid.key").stat().st_mode & 0o777) == "0o600"
        url = f"https://127.0.0.1:{port}"
        pinned = ControlClient(url, token=token, tls_fingerprint=fingerprint)
        wait_for(pinned.healthy, timeout=20)
        remote = {**env.vars, "TURSI_HOST": url, "TURSI_TOKEN": token, "TURSI_TLS_FINGERPRINT": fingerprint}
        ps = subprocess.run([*CLI, "ps"], env=remote, capture_output=True, text=True)
        assert ps.returncode == 0, ps.stderr
        assert ps.stdout.startswith("NAME")
        # the certificate as a CA file: verified chain and host name (127.0.0.1 is in its SANs)
        by_ca = ControlClient(url, token=token, tls_ca=str(env.home / "tls" / "tursid.crt"))
        assert by_ca.request("GET", "/v1/system")["hardware"]
        with pytest.raises(DaemonUnavailable, match="TLS"):  # not trusted by the system store
            ControlClient(url, token=token).request("GET", "/v1/system")
        with pytest.raises(TlsMismatch):  # another pin: refused before the token is sent
            ControlClient(url, token=token, tls_fingerprint="sha256:" + "0" * 64).request("GET", "/v1/system")
        with pytest.raises(DaemonUnavailable):  # plain HTTP to the TLS port
            ControlClient(f"http://127.0.0.1:{port}", token=token).request("GET", "/v1/system")
        _context_keeps_its_own_token(env, url, token, fingerprint)  # before the failures counted below
        wrong = subprocess.run([*CLI, "ps"], env={**remote, "TURSI_TOKEN": "nope"}, capture_output=True, text=True)
        assert wrong.returncode == 77
        assert "needs its token" in wrong.stderr
        with pytest.raises(Unauthorized):
            ControlClient(url, tls_fingerprint=fingerprint).request("GET", "/v1/deployments")
        assert env.client.healthy()  # the local socket needs no token
        for _ in range(3):
            with pytest.raises(Unauthorized):
                ControlClient(url, token="bad", tls_fingerprint=fingerprint).request("GET", "/v1/system")
        with pytest.raises(RateLimited):  # five failures in a minute from one address: throttled
            pinned.request("GET", "/v1/system")
        rotated = subprocess.run([*DAEMON, "--rotate-token"], env=env.vars, capture_output=True, text=True)
        assert rotated.returncode == 0
        assert "control token" in rotated.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # a restart keeps the certificate (clients' pins stay valid) and shows no new token
    proc, log = start_tcp_daemon(env, "--listen", f"127.0.0.1:{port}")
    try:
        assert said(log, "TLS certificate ") == fingerprint
        assert "TURSI_TOKEN" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _context_keeps_its_own_token(env: Env, url: str, token: str, fingerprint: str) -> None:
    """TURSI_TOKEN is for the daemon TURSI_HOST/--daemon names: a context's daemon gets the context's own token."""
    mine = {**env.vars, "XDG_CONFIG_HOME": str(env.home.parent / "config"), "TURSI_TOKEN": "tct_for_another_daemon"}
    for args in (["create", "pi", "--host", url, "--token", token, "--tls-fingerprint", fingerprint], ["use", "pi"]):
        subprocess.run([*CLI, "context", *args], env=mine, capture_output=True, check=True)
    ps = subprocess.run([*CLI, "ps"], env=mine, capture_output=True, text=True)
    assert ps.returncode == 0, ps.stderr  # not 77: the stray TURSI_TOKEN did not replace the context's token
    assert ps.stdout.startswith("NAME")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:{port}", "--no-auth"], "without a token"),
        (["--listen", "0.0.0.0:{port}", "--no-tls"], "plain HTTP"),
        (["--no-auth"], "apply to --listen"),
        (["--listen", "127.0.0.1:{port}", "--tls-cert", "/nonexistent.pem"], "go together"),
        (["--listen", "nonsense"], "HOST:PORT"),
    ],
)
def test_unsafe_listen_refuses_to_start(env: Env, args: list[str], message: str) -> None:
    port = free_port()
    env.home.mkdir(parents=True)
    proc = subprocess.run(
        [*DAEMON, *(a.format(port=port) for a in args)], env=env.vars, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 64
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (env.home / "tursid.sock").exists()


def test_loopback_without_token_or_tls_is_allowed(env: Env) -> None:
    port = free_port()
    proc, log = start_tcp_daemon(env, "--listen", f"127.0.0.1:{port}", "--no-auth", "--no-tls")
    try:
        client = ControlClient(f"http://127.0.0.1:{port}")
        wait_for(client.healthy, timeout=20)
        assert client.request("GET", "/v1/deployments") == []
        assert not (env.home / "control-token.sha256").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_init_makes_token_and_certificate_then_exits(env: Env) -> None:
    env.home.mkdir(parents=True)
    first = subprocess.run(
        [*DAEMON, "--listen", "0.0.0.0:8765", "--init"], env=env.vars, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert "control token (shown once" in first.stderr
    assert "TLS certificate sha256:" in first.stderr
    assert not (env.home / "tursid.sock").exists()  # it did not start serving
    again = subprocess.run(
        [*DAEMON, "--listen", "0.0.0.0:8765", "--init"], env=env.vars, capture_output=True, text=True, timeout=60
    )
    assert "TURSI_TOKEN" not in again.stderr  # shown once
    assert "exists already" in again.stderr
    assert said_fingerprint(first.stderr) == said_fingerprint(again.stderr)


def said_fingerprint(text: str) -> str:
    return text.split("TLS certificate ", 1)[1].split()[0]


def test_tls_listener_has_a_handshake_deadline_and_a_connection_cap(env: Env) -> None:
    import socket
    import ssl
    import time

    env.vars.update({"TURSI_HEADER_TIMEOUT": "2", "TURSI_MAX_CONNECTIONS_PER_CLIENT": "3"})
    port = free_port()
    proc, log = start_tcp_daemon(env, "--listen", f"127.0.0.1:{port}")
    try:
        said(log, "TLS certificate ")  # printed before the listener is up: wait until it accepts

        def accepts() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(accepts, timeout=30)
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # never starts TLS
        t0 = time.monotonic()
        assert silent.recv(100) == b""  # dropped by the handshake deadline
        assert time.monotonic() - t0 < 6
        silent.close()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the cap, not the certificate, is under test
        held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(3)]
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as fourth:
            answer = fourth.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"too_many_connections" in answer
        for s in held:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
