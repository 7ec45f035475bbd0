"""Encoder quantization schemes and the quality guard on a tiny random BERT (real conversion, real tursid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import embed


def up(env: Env, *args: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    proc = env.cli("up", *args, check=True)
    name = proc.stdout.split(" is ready")[0]
    info = json.loads(env.cli("inspect", name, check=True).stdout)
    return info, info["manifest"], proc.stderr


@pytest.mark.parametrize(
    ("args", "scheme", "method"),
    [
        (["--bits", "4"], "int4", "MatMulNBits"),
        (["--quantization", "static"], "int8-static", "calibration texts"),
        ([], "int8-dynamic", "per-channel QInt8"),
    ],
)
def test_schemes(env: Env, daemon: DaemonProc, tiny_bert: Path, args: list[str], scheme: str, method: str) -> None:
    info, manifest, _ = up(env, str(tiny_bert), "--min-quality", "0", *args)
    assert info["quantization"] == scheme
    assert manifest["quantization"] == scheme
    assert method in manifest["quantization_method"]
    assert manifest["fallbacks"] == []
    assert 0.0 < manifest["quality"]["min"] <= 1.0
    assert embed(info["endpoint"], ["works"]).shape == (1, 32)


def test_static_with_a_calibration_file(env: Env, daemon: DaemonProc, tiny_bert: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(f"sample sentence number {i} about edge devices" for i in range(12)))
    info, manifest, _ = up(
        env, str(tiny_bert), "--quantization", "static", "--calibration", str(calib), "--min-quality", "0"
    )
    assert "over 12 calibration texts" in manifest["quantization_method"]
    assert manifest["plan"]["params"]["calibration_digest"].startswith("sha256:")
    # another calibration file is another artifact
    calib.write_text("\n".join(f"other text {i}" for i in range(10)))
    _, other, _ = up(
        env,
        str(tiny_bert),
        "--quantization",
        "static",
        "--calibration",
        str(calib),
        "--min-quality",
        "0",
        "--name",
        "other",
    )
    assert other["key"] != manifest["key"]


def test_quality_guard_falls_back_and_says_so(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    info, manifest, progress = up(env, str(tiny_bert), "--bits", "4", "--min-quality", "0.99999")
    assert [f["scheme"] for f in manifest["fallbacks"]] == ["int4", "int8-dynamic"]
    assert manifest["quantization"] == "fp32"
    assert info["quantization"] == "fp32"  # ps shows what is served, not what was asked
    assert "int4: min cosine" in progress
    assert "falling back to int8-dynamic" in progress
    assert "falling back to fp32" in progress
    assert manifest["quality"]["min"] == pytest.approx(1.0, abs=1e-4)
    assert "fp32" in env.cli("ps", check=True).stdout


def test_images_rmi_prune(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    env.cli("up", str(tiny_bert), "--name", "a", check=True)
    env.cli("up", str(tiny_bert), "--name", "b", "--bits", "4", "--min-quality", "0", check=True)
    arts = json.loads(env.cli("images", "--format", "json", check=True).stdout)
    assert sorted(a["quantization"] for a in arts) == ["int4", "int8-dynamic"]
    assert all(a["size_bytes"] > 0 for a in arts)
    table = env.cli("images", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["KEY", "SOURCE", "FORMAT", "QUANT"]
    int4 = next(a for a in arts if a["quantization"] == "int4")
    assert int4["used_by"] == ["b"]
    busy = env.cli("rmi", int4["key"][:8])
    assert busy.returncode == 73
    assert "used by b" in busy.stderr
    env.cli("down", "b", check=True)
    assert env.cli("prune", check=True).stdout.startswith(f"removed {int4['key'][:12]}")
    left = json.loads(env.cli("images", "--format", "json", check=True).stdout)
    assert [a["used_by"] for a in left] == [["a"]]
    assert not (env.home / "artifacts" / int4["key"]).exists()
    assert env.cli("rmi", "zz").returncode == 64
    assert env.cli("rmi", "abcdef").returncode == 66
