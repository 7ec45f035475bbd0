"""One SmolLM2 worker for a whole test module (its tursid, home and worker stopped at the end)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import DaemonProc, make_env, stop_everything_in
from tests.integration.test_lifecycle import free_port


@contextmanager
def smollm2_worker(tmp_path_factory: pytest.TempPathFactory, label: str) -> Iterator[str]:
    """``tursi up smollm2`` in a fresh home: yields the worker's /v1 endpoint."""
    env = make_env(tmp_path_factory.mktemp(label) / "home")
    daemon = DaemonProc(env).start()
    try:
        port = free_port()
        env.cli("up", "smollm2", "--port", str(port), "--threads", "2", check=True)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        daemon.terminate()
        stop_everything_in(env.home)


def openai_client(endpoint: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=endpoint, api_key="unused", timeout=300)
