"""The worker command line tursid builds (its settings from the stored spec), parsed back by the worker; and the
environment workers get."""

from __future__ import annotations

import time

import pytest

from tursi.core.health import HealthCheck
from tursi.core.spec import DeploymentSpec
from tursi.daemon.state import Deployment
from tursi.daemon.supervisor import child_env, worker_artifact, worker_command
from tursi.worker.__main__ import parse_settings


def _dep(model: str, **options: object) -> Deployment:
    return Deployment(
        name="d",
        model=model,
        source="/m",
        task="embeddings",
        format="onnx",
        quantization="int8-dynamic",
        artifact_key="k",
        artifact_path="/home/u/.local/share/tursi/artifacts/k",
        host="127.0.0.1",
        port=9000,
        status="created",
        created_at=time.time(),
        options=dict(options),
    )


@pytest.mark.parametrize("model", ["--help", "-h", "--port=1", "--name", "-", "minilm", "/models/--version"])
def test_values_that_look_like_options_stay_values(model: str) -> None:
    dep = _dep(model, rate_limit=None, api_key_sha256=None, threads=4)
    argv = worker_command(dep, python="python")
    assert argv[:3] == ["python", "-m", "tursi.worker"]
    assert len(argv) == 4  # one --opt=value: nothing in it can pass for an option
    assert argv[3].startswith("--settings=")
    settings = parse_settings(argv[3:])
    assert settings.model_ref == model
    assert (settings.name, settings.artifact, settings.port, settings.spec.threads) == ("d", dep.artifact_path, 9000, 4)
    assert (settings.spec.rate_limit, settings.api_key_sha256) == (None, None)
    assert worker_artifact(argv) == dep.artifact_path  # how tursid finds its orphaned workers


def test_a_worker_gets_the_stored_serving_settings_and_only_the_key_digest() -> None:
    key = "k" * 32
    spec = DeploymentSpec.parse({"model": "m", "max_queue": 0, "max_batch": 1, "rate_limit": "5/s", "api_key": key})
    dep = _dep("m", **spec.stored_options(api_key_sha256="ab" * 32))
    argv = worker_command(dep, python="python")
    assert key not in " ".join(argv)
    settings = parse_settings(argv[3:])
    assert (settings.spec.max_queue, settings.spec.max_batch, settings.spec.rate_limit) == (0, 1, "5/second")
    assert settings.api_key_sha256 == "ab" * 32


def test_rows_of_older_tursids_still_start_workers() -> None:
    """Options stored before the spec (health keys only when given, no batching keys) read as their defaults."""
    old = {"threads": 2, "ctx_size": 0, "max_queue": 8, "rate_limit": None, "restart": "on-failure:2"}
    old |= {"restart_on_unhealthy": False, "api_key_sha256": None, "bits": None, "quantization_scheme": "dynamic"}
    settings = parse_settings(worker_command(_dep("m", **old), python="python")[3:])
    assert (settings.spec.threads, settings.spec.max_queue, settings.spec.max_batch) == (2, 8, DeploymentSpec.max_batch)
    stored = DeploymentSpec.from_stored(old)
    assert str(stored.restart_policy()) == "on-failure:2"
    assert stored.health_check() == HealthCheck()
    assert (
        worker_artifact(["python", "-m", "tursi.worker", "--artifact=/t/artifacts/k", "--port=1"]) == "/t/artifacts/k"
    )


def test_workers_and_converters_get_no_secrets() -> None:
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": "/src",
        "HF_HOME": "/hf",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "TURSI_HOME": "/t",
        "QEMU_CPU": "cortex-a72",
        "TURSI_FAILPOINTS": "1",
        "TURSI_HEADER_TIMEOUT": "3",
        "TURSI_TOKEN": "control-token",
        "TURSI_HOST": "https://device:8765",
        "HF_TOKEN": "hf_secret",
        "OPENAI_API_KEY": "sk-secret",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "GITHUB_TOKEN": "gh",
        "SSH_AUTH_SOCK": "/run/agent",
        "DATABASE_URL": "postgres://u:p@h/db",
    }
    env = child_env(parent, PYTHONUNBUFFERED="1")
    kept = {"PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "OMP_NUM_THREADS"}
    kept |= {"TURSI_HOME", "TURSI_FAILPOINTS", "TURSI_HEADER_TIMEOUT", "PYTHONUNBUFFERED", "QEMU_CPU"}
    assert set(env) == kept
    assert env["PYTHONUNBUFFERED"] == "1"
