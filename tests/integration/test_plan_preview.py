"""`tursi up --dry-run` (POST /v1/plan) against a real tursid: the plan, its reasons, the cache, the expected size
and memory, and proof that nothing was converted, recorded or started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env


def dry_run(env: Env, *args: str) -> dict[str, Any]:
    return json.loads(env.cli("up", *args, "--dry-run", "--output", "json", check=True).stdout)


def artifacts(env: Env) -> list[str]:
    folder = env.home / "artifacts"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_minilm_dry_run_shows_plan_reasons_size_memory_and_converts_nothing(
    env: Env, daemon: DaemonProc, minilm_dir: Path
) -> None:
    proc = env.cli("up", str(minilm_dir), "--dry-run", check=True)
    out = proc.stdout
    assert "format:      onnx on onnxruntime (embeddings)" in out
    assert "scheme:      int8-dynamic" in out
    assert "artifact:    not cached: up would convert it" in out
    assert "quality:     min cosine >= 0.85 vs fp32" in out
    assert "reasons:\n  format: encoder model: ONNX on onnxruntime" in out
    assert "  quantization: int8 dynamic, per-channel QInt8 weights" in out
    assert "  hardware: " in out
    assert "(detected on this machine" in out
    size_line = next(line for line in out.splitlines() if line.startswith("size:"))
    memory_line = next(line for line in out.splitlines() if line.startswith("memory:"))
    assert "MiB" in size_line
    assert "parameters" in size_line
    assert "+ runtime" in memory_line
    assert "budget" in memory_line
    assert "[1/4]" not in proc.stderr  # no conversion progress
    plan = dry_run(env, str(minilm_dir))
    est = plan["estimate"]
    source_bytes = (minilm_dir / "model.safetensors").stat().st_size
    assert source_bytes / 6 < est["artifact_bytes"] < source_bytes / 2  # int8: about a quarter of fp32
    assert est["memory_bytes"] > est["artifact_bytes"]
    assert est["memory_budget_bytes"] > est["memory_bytes"]
    assert est["fits_budget"] is True
    assert plan["quality_floor"] == {"min_quality": 0.85, "metric": "min cosine", "note": None}
    assert (plan["built"], plan["cached"], plan["artifact_key"]) == (False, None, None)
    assert plan["threads"] >= 1
    assert plan["hardware"]["name"] == "detected"
    assert env.ps("-a") == []  # nothing recorded
    assert artifacts(env) == []  # nothing converted
    assert not list(env.home.glob("logs/convert-*"))  # no conversion was started either


def test_gguf_dry_run_shows_its_quantization_and_memory_with_kv_cache(
    env: Env, daemon: DaemonProc, smollm2_gguf: Path
) -> None:
    out = env.cli("up", str(smollm2_gguf), "--dry-run", check=True).stdout
    assert "format:      gguf on llama (chat)" in out
    assert "scheme:      Q4_1" in out
    assert "KV cache" in out
    plan = dry_run(env, str(smollm2_gguf))
    est, size = plan["estimate"], smollm2_gguf.stat().st_size
    assert plan["plan"]["quantization"] == "Q4_1"
    assert plan["plan"]["converter"] == "gguf-import"
    assert est["artifact_bytes"] == size  # imported as is
    assert est["kv_cache_bytes"] > 0
    assert est["memory_bytes"] == size + est["kv_cache_bytes"] + est["overhead_bytes"] > size
    assert plan["quality_floor"]["min_quality"] is None
    assert env.ps("-a") == []
    assert artifacts(env) == []


def test_target_dry_run_plans_for_the_target_profile(env: Env, daemon: DaemonProc, minilm_dir: Path) -> None:
    out = env.cli("up", str(minilm_dir), "--dry-run", "--target", "rpi4", check=True).stdout
    assert "target profile rpi4" in out
    assert "hardware:    rpi4: aarch64" in out
    plan = dry_run(env, str(minilm_dir), "--target", "rpi4")
    assert plan["hardware"]["name"] == "rpi4"
    assert plan["hardware"]["arch"] == "aarch64"
    assert plan["plan"]["params"]["hardware_target"] == "rpi4"
    assert plan["plan"]["params"]["reduce_range"] is False  # ARM kernels need no 7-bit weights
    assert env.ps("-a") == []
    assert artifacts(env) == []


def test_dry_run_after_up_and_down_reports_the_cached_artifact(
    env: Env, seeded_tiny_bert: None, daemon: DaemonProc, tiny_bert: Path
) -> None:
    env.cli("up", str(tiny_bert), "--name", "a", check=True)
    (dep,) = env.ps()
    key = dep["artifact_key"]
    taken = env.cli("up", str(tiny_bert), "--name", "a", "--dry-run")  # up would refuse this name: so does its preview
    assert taken.returncode == env.cli("up", str(tiny_bert), "--name", "a").returncode != 0
    assert "already in use" in taken.stderr
    env.cli("down", "a", check=True)
    before = artifacts(env)
    plan = dry_run(env, str(tiny_bert), "--name", "a")
    assert (plan["cached"], plan["artifact_key"], plan["built"], plan["name"]) == (key, key, False, "a")
    manifest = json.loads((env.home / "artifacts" / key / "manifest.json").read_text())
    assert plan["estimate"]["artifact_bytes"] == manifest["size_bytes"]  # measured, not estimated
    assert plan["plan"] == manifest["plan"]
    out = env.cli("up", str(tiny_bert), "--dry-run", check=True).stdout
    assert f"artifact:    cached artifact {key[:12]}: this plan was converted before" in out
    built = dry_run(env, key[:12])  # the key itself: a built artifact, used as is
    assert (built["built"], built["artifact_key"], built["plan"]) == (True, key, manifest["plan"])
    assert artifacts(env) == before
    assert env.ps("-a") == []


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("/nonexistent/model-folder", "not found"),
        ("registry.example.com:5000/models/minilm:v1", "a dry run does not pull"),
    ],
)
def test_bad_input_answers_like_up_and_the_daemon_keeps_serving(
    env: Env, daemon: DaemonProc, model: str, says: str
) -> None:
    preview = env.cli("up", model, "--dry-run")
    assert preview.returncode != 0
    assert says in preview.stderr
    assert preview.stdout == ""
    if "not found" in says:  # the same error as up itself, word for word
        up = env.cli("up", model)
        assert (preview.returncode, preview.stderr) == (up.returncode, up.stderr)
    else:
        assert preview.returncode == 64  # InvalidSpec: a usage error
    env.cli("ps", check=True)
    assert env.ps("-a") == []
    assert artifacts(env) == []
