"""A throwaway tursid in a temporary TURSI_HOME for benchmarks (not tests: no asserts on time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tursi.client.control import ControlClient


class BenchDaemon:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tursi-bench-"))
        self.env = {**os.environ, "TURSI_HOME": str(self.home), "TURSI_NO_AUTOSTART": "1", **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BenchDaemon:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tursi.daemon"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = ControlClient(f"unix://{self.home / 'tursid.sock'}")
        deadline = time.monotonic() + 20
        while not client.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("tursid did not start")
            time.sleep(0.05)
        return self

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "tursi.cli", *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def deployment(self, name: str) -> dict[str, Any]:
        return {d["name"]: d for d in json.loads(self.cli("ps", "--format", "json"))}[name]

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
