"""tursid over TCP: the token is shown once and stored hashed, wrong or missing tokens get 401, repeated
failures are throttled, rotation takes effect at once; the Unix socket needs no token."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import DAEMON, Env, wait_for
from tests.integration.test_lifecycle import free_port
from tursi.client import ControlClient
from tursi.errors import RateLimited, Unauthorized


def test_tcp_control_with_token(env: Env) -> None:
    import pytest

    port = free_port()
    env.home.mkdir(parents=True)
    err = (env.home / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [*DAEMON, "--listen", f"127.0.0.1:{port}"], env=env.vars, stderr=err, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: "control token" in (env.home / "stderr.txt").read_text(), timeout=20)
        token = (env.home / "stderr.txt").read_text().split("TURSI_TOKEN): ", 1)[1].split()[0]
        stored = (env.home / "control-token.sha256").read_text()
        assert token not in stored
        assert oct((env.home / "control-token.sha256").stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ControlClient(url, token=token).healthy(), timeout=20)
        remote = {**env.vars, "TURSI_HOST": url, "TURSI_TOKEN": token}
        ps = subprocess.run([sys.executable, "-m", "tursi.cli", "ps"], env=remote, capture_output=True, text=True)
        assert ps.returncode == 0, ps.stderr
        assert ps.stdout.startswith("NAME")
        wrong = subprocess.run(
            [sys.executable, "-m", "tursi.cli", "ps"],
            env={**remote, "TURSI_TOKEN": "nope"},
            capture_output=True,
            text=True,
        )
        assert wrong.returncode == 77
        assert "needs its token" in wrong.stderr
        with pytest.raises(Unauthorized):
            ControlClient(url).request("GET", "/v1/deployments")
        assert env.client.healthy()  # the local socket needs no token
        for _ in range(3):
            with pytest.raises(Unauthorized):
                ControlClient(url, token="bad").request("GET", "/v1/system")
        with pytest.raises(RateLimited):  # five failures in a minute from one address: throttled
            ControlClient(url, token=token).request("GET", "/v1/system")
        rotated = subprocess.run([*DAEMON, "--rotate-token"], env=env.vars, capture_output=True, text=True)
        assert rotated.returncode == 0
        assert "control token" in rotated.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        err.close()
