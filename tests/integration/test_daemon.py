"""tursid as a real process: socket, single instance, signals, the CLI's error mapping, autostart. The control
API's own refusals (problem+json codes) run in process: tests/unit/test_control_api.py."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import DAEMON, DaemonProc, Env, make_env, stop_everything_in, wait_for


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One tursid for the CLI's refusals below: none of them deploys anything (each case checks)."""
    env = make_env(tmp_path_factory.mktemp("refusals") / "home")
    daemon = DaemonProc(env).start()
    yield env
    daemon.terminate()
    stop_everything_in(env.home)


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
def test_cli_maps_errors_to_one_line_and_exit_status(idle: Env, args: list[str], exit_code: int, message: str) -> None:
    proc = idle.cli(*args)
    assert proc.returncode == exit_code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert idle.client.request("GET", "/v1/deployments", query={"all": "1"}) == []  # the next case starts clean


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
