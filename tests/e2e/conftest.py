"""Shared by the edge tests: a serving-only venv (no torch) and a real MiniLM bundle built on the "workstation"."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, make_env, stop_everything_in

ROOT = Path(__file__).resolve().parents[2]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.fixture(scope="session")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install tursi[serve]` (not editable: the wheel must carry what a device needs) into a fresh venv,
    with llama-cpp-python from platform/install-llama-cpp.sh, exactly as platform/install-device.sh does."""
    venv = tmp_path_factory.mktemp("serve") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    log = venv.parent / "install.log"
    with log.open("w") as out:
        for cmd in (
            ["bash", str(ROOT / "platform" / "install-llama-cpp.sh"), str(python)],
            [str(python), "-m", "pip", "install", "--quiet", f"{ROOT}[serve]"],
        ):
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=venv.parent).returncode != 0:
                raise AssertionError(f"serving-only install failed: {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return venv


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """all-MiniLM-L6-v2 built for the x86-64-v3 profile by a workstation tursid, as a .tursi file."""
    base = tmp_path_factory.mktemp("workstation")
    env = make_env(base / "home")
    daemon = DaemonProc(env).start()
    try:
        out = base / "minilm.tursi"
        env.cli("build", "minilm", "--target", "x86-64-v3", "-o", str(out), check=True)
    finally:
        daemon.terminate()
        stop_everything_in(env.home)
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("tursi-bundle.json").read())  # type: ignore[union-attr]
    return out, index
