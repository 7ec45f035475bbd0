"""A throwaway tursid in a temporary TURSI_HOME for benchmarks (not tests: no asserts on time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tursi.client.control import ControlClient
from tursi.client.daemon_start import DaemonHandle, start_tursid
from tursi.core.errors import DaemonUnavailable


class BenchDaemon:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tursi-bench-"))
        self.env = {**os.environ, "TURSI_HOME": str(self.home), "TURSI_NO_AUTOSTART": "1", **(extra_env or {})}
        self.handle: DaemonHandle | None = None

    def __enter__(self) -> BenchDaemon:
        client = ControlClient(f"unix://{self.home / 'tursid.sock'}")
        try:  # output discarded, and in the bench's own session: Ctrl-C stops it too
            self.handle = start_tursid(client, self.env, timeout_s=20, new_session=False)
        except DaemonUnavailable as e:
            raise RuntimeError(f"tursid did not start: {e}") from e
        return self

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "tursi.cli", *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def deployment(self, name: str) -> dict[str, Any]:
        return {d["name"]: d for d in json.loads(self.cli("ps", "--format", "json"))}[name]

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.stop(timeout_s=60)
