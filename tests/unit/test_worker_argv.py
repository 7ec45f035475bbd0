"""The worker command line tursid builds, parsed back by the worker; and the environment workers get."""

from __future__ import annotations

import time

import pytest

from tursi.daemon.state import Deployment
from tursi.daemon.supervisor import child_env, worker_command
from tursi.worker.__main__ import build_parser


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
    dep = _dep(model, rate_limit="", api_key_sha256=None, threads=4)
    argv = worker_command(dep, python="python")
    assert argv[:3] == ["python", "-m", "tursi.worker"]
    args = build_parser().parse_args(argv[3:])
    assert args.model_ref == model
    assert (args.name, str(args.artifact), args.port, args.threads) == ("d", dep.artifact_path, 9000, 4)
    assert (args.rate_limit, args.api_key_sha256) == ("", "")


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
    kept |= {"TURSI_HOME", "TURSI_FAILPOINTS", "TURSI_HEADER_TIMEOUT", "PYTHONUNBUFFERED"}
    assert set(env) == kept
    assert env["PYTHONUNBUFFERED"] == "1"
