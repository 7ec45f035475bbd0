"""SmolLM2 GGUF: prompt and decode tokens/s and time to first token through Tursi (HTTP + SSE) vs
``llama_cpp.Llama`` in-process on the same file and threads; optionally vs llama.cpp's ``llama-server``."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchDaemon

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
LONG = "Summarise the following notes from a maintenance log in three bullet points. " + " ".join(
    f"Day {i}: the pump on line {i % 7} was checked, pressure {90 + i % 13} kPa, no leaks found." for i in range(30)
)


def decode_rate(arrivals: list[float]) -> float:
    """Tokens per second after the first token (prompt processing excluded)."""
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


def stream_http(port: int, prompt: str, tokens: int) -> tuple[float, float, int]:
    """(decode tok/s, seconds to the first token, tokens) from an OpenAI-style /v1/completions stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    arrivals = []
    for line in resp:  # light parsing: the load generator shares the cores with the server
        if line.startswith(b"data: {") and b'"text":' in line and not _empty_text(line):
            arrivals.append(time.perf_counter())
    conn.close()
    return decode_rate(arrivals), arrivals[0] - t0, len(arrivals)


def _empty_text(line: bytes) -> bool:
    return b'"text": ""' in line or b'"text":""' in line


def stream_inprocess(llm: Any, prompt: str, tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    arrivals = []
    for chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0, stream=True):
        if chunk["choices"][0]["text"]:
            arrivals.append(time.perf_counter())
    return decode_rate(arrivals), arrivals[0] - t0, len(arrivals)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_llama_server(binary: str, gguf: Path, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-m", str(gguf), "-t", str(threads), "-c", "4096", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
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


def run(daemon: BenchDaemon, gguf: Path, runs: int, tokens: int, threads: int, llama_server: str | None) -> dict:
    from llama_cpp import Llama

    daemon.cli("up", "smollm2", "--name", "llm", "--threads", str(threads), "--ctx-size", "4096")
    port = daemon.deployment("llm")["port"]
    llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    n_prompt = len(llm.tokenize(LONG.encode()))
    sides: dict[str, Any] = {
        "tursi": lambda p, t: stream_http(port, p, t),
        "inprocess": lambda p, t: stream_inprocess(llm, p, t),
    }
    server = None
    if llama_server:
        server, server_port = _start_llama_server(llama_server, gguf, threads)
        sides["llama_server"] = lambda p, t: stream_http(server_port, p, t)
    try:
        for side in sides.values():
            side(PROMPT, 8)  # warm-up
        decode: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}
        prompt_rate: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(runs):  # alternate so drift on a noisy machine hits every side alike
            for name, side in sides.items():
                decode[name].append(side(PROMPT, tokens))
                # a prompt that starts differently each time: no KV-cache reuse from the last run
                _, ttft, _ = side(f"Run {i} {name}. " + LONG, 1)
                prompt_rate[name].append(n_prompt / ttft)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
    out: dict[str, Any] = {
        "model": gguf.name,
        "threads": threads,
        "runs": runs,
        "tokens": tokens,
        "prompt_tokens": n_prompt,
    }
    for name in sides:
        out[name] = {
            "decode_tok_s": round(statistics.median(r[0] for r in decode[name]), 1),
            "ttft_ms": round(1000 * statistics.median(r[1] for r in decode[name]), 1),
            "prompt_tok_s": round(statistics.median(prompt_rate[name]), 1),
        }
    out["ratios"] = {
        "decode_tursi_vs_inprocess": round(out["tursi"]["decode_tok_s"] / out["inprocess"]["decode_tok_s"], 3),
        "prompt_tursi_vs_inprocess": round(out["tursi"]["prompt_tok_s"] / out["inprocess"]["prompt_tok_s"], 3),
    }
    if "llama_server" in out:
        out["ratios"]["decode_tursi_vs_llama_server"] = round(
            out["tursi"]["decode_tok_s"] / out["llama_server"]["decode_tok_s"], 3
        )
    out["worker_rss_bytes"] = daemon.deployment("llm")["mem_bytes"]
    return out
