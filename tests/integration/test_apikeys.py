"""--api-key on inference endpoints: Bearer required, /health open, keys stored hashed and never logged."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, Env

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache


def status_of(url: str, key: str | None = None, body: dict | None = None) -> int:
    """200, or 401 when the answer is the problem+json `unauthorized` (0 for anything else)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        code = json.loads(e.read())["code"]
    return 401 if code == "unauthorized" else 0


def test_generated_api_key(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    from openai import AuthenticationError, OpenAI

    proc = env.cli("up", str(tiny_bert), "--name", "lan", "--api-key", "auto", check=True)
    lines = proc.stdout.splitlines()
    endpoint = lines[0].split(": ", 1)[1]
    key = lines[1].split(": ", 1)[1]
    assert key.startswith("tsk_")
    base = endpoint.removesuffix("/v1")
    assert status_of(base + "/health") == 200  # stays open
    assert status_of(endpoint + "/models") == 401
    assert status_of(endpoint + "/embeddings", body={"input": "x"}) == 401
    assert status_of(endpoint + "/embeddings", key="wrong-key-wrong-key", body={"input": "x"}) == 401
    assert status_of(endpoint + "/embeddings", key=key, body={"input": "x"}) == 200
    ok = OpenAI(base_url=endpoint, api_key=key).embeddings.create(model="lan", input=["with the key"])
    assert len(ok.data[0].embedding) == 32
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=endpoint, api_key="nope-nope-nope-nope").embeddings.create(model="lan", input=["x"])
    # the key itself is nowhere on disk: not in the database, not in logs
    for f in env.home.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            assert key.encode() not in f.read_bytes(), f
    info = json.loads(env.cli("inspect", "lan", check=True).stdout)
    assert len(info["options"]["api_key_sha256"]) == 64


def test_given_api_key_and_weak_key_refused(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    weak = env.cli("up", str(tiny_bert), "--api-key", "short")
    assert weak.returncode == 64
    assert "at least 16 characters" in weak.stderr
    proc = env.cli("up", str(tiny_bert), "--name", "given", "--api-key", "a-long-enough-secret-key", check=True)
    assert "API key (shown once" not in proc.stdout  # the user chose it: nothing to show
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    assert status_of(endpoint + "/embeddings", key="a-long-enough-secret-key", body={"input": "x"}) == 200
