"""llama.cpp's own server as the LLM baseline: built once from the llama.cpp source vendored in the installed
llama-cpp-python's sdist, with the same flags as the bindings (platform/build-llama-server.sh caches it)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build() -> str:
    """The path of the cached llama-server binary, building it first if needed (~8 min on 2 cores)."""
    from importlib.metadata import version

    sys.stderr.write("[bench] llama-server: building or reusing the cached build\n")
    proc = subprocess.run(
        ["bash", str(ROOT / "platform" / "build-llama-server.sh"), sys.executable],
        env={**os.environ, "LLAMA_CPP_VERSION": version("llama-cpp-python")},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building llama-server failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(binary: str, gguf: Path, threads: int, ctx: int) -> tuple[subprocess.Popen[bytes], int]:
    """llama-server with its defaults (4 slots sharing one unified KV cache, as Tursi's default) except what both
    sides must share: model, threads, context."""
    port = free_port()
    cmd = [binary, "-m", str(gguf), "-t", str(threads), "-c", str(ctx)]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"llama-server at {binary} did not become healthy")
