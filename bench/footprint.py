"""Deployment time and footprint: `tursi up` cold (with conversion) and warm (artifact cached) to ready,
`tursi ps` wall time, tursid's idle RSS and CPU (its sampler included)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.harness import BenchDaemon


def _timed(daemon: BenchDaemon, *args: str) -> float:
    t0 = time.perf_counter()
    daemon.cli(*args)
    return time.perf_counter() - t0


def _tursi_command() -> list[str]:
    script = Path(sys.executable).parent / "tursi"  # the console script a user runs
    return [str(script)] if script.exists() else [shutil.which("tursi") or "tursi"]


def run(idle_s: float, ps_runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with BenchDaemon() as daemon:  # a fresh home: the first up converts
        assert daemon.handle is not None
        proc = psutil.Process(daemon.handle.pid)
        time.sleep(2.0)
        out["tursid_fresh_rss_bytes"] = proc.memory_info().rss
        out["up_cold_s"] = round(_timed(daemon, "up", "minilm", "--name", "cold"), 2)
        daemon.cli("down", "cold")
        warm = [_timed(daemon, "up", "minilm", "--name", f"warm{i}") for i in range(3)]
        out["up_warm_s"] = round(statistics.median(warm), 3)
        out["up_gguf_s"] = round(_timed(daemon, "up", "smollm2", "--name", "llm"), 2)
        cmd = [*_tursi_command(), "ps"]
        times = []
        for _ in range(ps_runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=daemon.env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        out["ps_ms"] = {"median": round(1000 * statistics.median(times), 1), "max": round(1000 * max(times), 1)}
        daemon.cli("down", "--all")
        time.sleep(3.0)  # settle after the last request
        cpu0, t0 = proc.cpu_times(), time.perf_counter()
        rss = [proc.memory_info().rss]
        while time.perf_counter() - t0 < idle_s:
            time.sleep(min(1.0, idle_s))
            rss.append(proc.memory_info().rss)
        cpu1, elapsed = proc.cpu_times(), time.perf_counter() - t0
        busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        out["tursid_idle"] = {
            "seconds": round(elapsed, 1),
            "rss_bytes_max": max(rss),
            "uss_bytes": proc.memory_full_info().uss,
            "cpu_percent": round(100 * busy / elapsed, 3),
            "sample_interval_s": 2.0,
        }
    return out
