"""platform/: the systemd unit and the device install script say what the README promises."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "platform" / "systemd" / "tursid.service"
INSTALL = ROOT / "platform" / "install-device.sh"


def test_systemd_unit(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in systemd
    unit.read(UNIT)
    service = unit["Service"]
    assert service["User"] == "tursi"
    assert service["Restart"] == "always"
    assert service["StateDirectory"] == "tursi"
    assert service["Environment"] == "TURSI_HOME=/var/lib/tursi"
    assert service["ExecStart"] == "@PREFIX@/venv/bin/tursid $TURSID_ARGS"
    assert service["ReadWritePaths"] == "/var/lib/tursi"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):  # systemd's own checker, with ExecStart pointing at a real tursid
        bin_dir = tmp_path / "prefix" / "venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "tursid").symlink_to(Path(sys.executable).parent / "tursid")
        rendered = tmp_path / "tursid.service"
        rendered.write_text(UNIT.read_text().replace("@PREFIX@", str(tmp_path / "prefix")))
        proc = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_install_script_dry_run(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)]).returncode == 0
    proc = subprocess.run(
        ["bash", str(INSTALL), "--dry-run", "--prefix", str(tmp_path / "opt"), "--listen", "0.0.0.0:9000"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    steps = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert f"python3 -m venv {tmp_path}/opt/venv" in steps
    assert f"{tmp_path}/opt/venv/bin/pip install {ROOT}[serve]" in steps  # the serving extra: no torch
    assert any(s.endswith("--listen 0.0.0.0:9000 --init") and s.startswith("runuser -u tursi") for s in steps)
    assert "systemctl enable --now tursid" in steps
    assert not (tmp_path / "opt").exists()  # a dry run changes nothing
    bad = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 64


@pytest.mark.parametrize("profile", ["rpi4", "rpi5", "jetson-orin-nano", "x86-64-v3", "x86-64-v4"])
def test_profiles_are_reachable_from_platform(profile: str) -> None:
    assert (ROOT / "platform" / "profiles" / f"{profile}.json").is_file()  # platform/profiles -> tursi/profiles
