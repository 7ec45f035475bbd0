"""tursid as a real process: socket, single instance, signals, errors over real HTTP, autostart."""

from __future__ import annotations

import json
import stat
import subprocess

import pytest

from tests.conftest import DAEMON, DaemonProc, Env, wait_for


def test_socket_is_private_and_health_answers(env: Env, daemon: DaemonProc) -> None:
    mode = stat.S_IMODE((env.home / "tursid.sock").stat().st_mode)
    assert mode == 0o600
    assert env.client.request("GET", "/health")["status"] == "ok"
    system = env.client.request("GET", "/v1/system")
    assert system["home"] == str(env.home)
    assert system["schema_version"] >= 1


def test_second_daemon_on_the_same_home_refuses(env: Env, daemon: DaemonProc) -> None:
    second = subprocess.run(DAEMON, env=env.vars, capture_output=True, text=True, timeout=30)
    assert second.returncode == 75
    assert "another tursid holds" in second.stderr
    assert env.client.healthy()  # the first one is untouched


def test_sigterm_exits_zero_and_removes_the_socket(env: Env, daemon: DaemonProc) -> None:
    assert daemon.terminate() == 0
    assert not (env.home / "tursid.sock").exists()


def test_stale_socket_after_sigkill_is_replaced(env: Env, daemon: DaemonProc) -> None:
    daemon.kill9()
    assert (env.home / "tursid.sock").exists()  # left behind
    DaemonProc(env).start()
    assert env.client.healthy()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nope", None, 404, "not_found"),
        ("GET", "/v1/deployments/ghost", None, 404, "deployment_not_found"),
        ("DELETE", "/v1/deployments/ghost", None, 404, "deployment_not_found"),
        ("GET", "/v1/deployments/ghost/logs", None, 404, "deployment_not_found"),
        ("POST", "/v1/deployments", b"{not json", 400, "invalid_request"),
        ("POST", "/v1/deployments", b"[1, 2]", 400, "invalid_request"),
        ("POST", "/v1/deployments", b"{}", 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "ghost-model"}', 404, "model_not_found"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "bits": 3}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "bits": 4, "quantization": "static"}', 501, "not_supported"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "calibration": "/no/such"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "min_quality": 2}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "name": "Bad Name!"}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "minilm", "port": 70000}', 400, "invalid_spec"),
        ("POST", "/v1/deployments", b'{"model": "smollm2", "bits": 4}', 400, "invalid_spec"),
    ],
)
def test_api_errors_are_problem_json(
    env: Env, daemon: DaemonProc, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    conn = env.client._conn(10)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    assert resp.status == status
    assert resp.getheader("Content-Type").startswith("application/problem+json")
    assert payload["code"] == code
    assert payload["status"] == status
    assert payload["detail"]
    assert env.client.healthy()  # bad input never takes the daemon down


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["down", "ghost"], 66, "no deployment named 'ghost'"),
        (["logs", "ghost"], 66, "no deployment named 'ghost'"),
        (["inspect", "ghost"], 66, "no deployment named 'ghost'"),
        (["up", "ghost-model"], 66, "model 'ghost-model' not found"),
        (["up", "minilm", "--bits", "4", "--quantization", "static"], 64, "static int4"),
        (["up", "minilm", "--quantization", "static", "--calibration", "/no/such"], 2, "does not exist"),
        (["up", "minilm", "--name", "UPPER"], 64, "--name must match"),
        (["down"], 64, "there are no deployments"),
        (["down", "x", "--all"], 64, "not both"),
        (["up", "minilm", "--port", "0"], 2, "Invalid value for '--port'"),
        (["up", "minilm", "--target", "pi9"], 64, "unknown target profile 'pi9'"),
    ],
)
def test_cli_maps_errors_to_one_line_and_exit_status(
    env: Env, daemon: DaemonProc, args: list[str], exit_code: int, message: str
) -> None:
    proc = env.cli(*args)
    assert proc.returncode == exit_code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_without_daemon_and_no_autostart_fails_clearly(env: Env) -> None:
    proc = env.cli("ps")
    assert proc.returncode == 69
    assert "cannot reach tursid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_starts_a_daemon_when_none_answers(env: Env) -> None:
    vars_ = {**env.vars}
    del vars_["TURSI_NO_AUTOSTART"]
    auto = Env(env.home, vars_)
    try:
        proc = auto.cli("ps")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0].split() == [
            "NAME",
            "MODEL",
            "FORMAT",
            "QUANT",
            "ENDPOINT",
            "STATUS",
            "UPTIME",
            "MEM",
        ]
        assert env.client.healthy()
    finally:
        pid = int((env.home / "tursid.lock").read_text())
        subprocess.run(["kill", "-TERM", str(pid)], check=False)
        wait_for(lambda: not (env.home / "tursid.sock").exists(), timeout=20)


def test_version_and_help_work_without_a_daemon(env: Env) -> None:
    assert env.cli("--version").stdout.startswith("tursi, version")
    help_text = env.cli("--help").stdout
    for command in ("up", "ps", "down", "logs", "stats", "inspect"):
        assert command in help_text


def test_system_shows_the_hardware_profile(env: Env, daemon: DaemonProc) -> None:
    import platform

    from tursi.core.hardware import detect

    text = env.cli("system", check=True).stdout
    assert f"Arch     {platform.machine()}" in text
    expected = detect()
    assert ("SIMD     " + (", ".join(expected.features) or "none detected")) in text
    assert "rpi5" in text
    info = json.loads(env.cli("system", "--format", "json", check=True).stdout)
    assert info["hardware"]["physical_cores"] == expected.physical_cores
    assert (env.home / "hardware.json").is_file()  # the probe is cached for this boot
