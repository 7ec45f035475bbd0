"""The markdown side of a bench report: goals next to the figures, ratios first."""

from __future__ import annotations

from typing import Any

GOALS = [
    # (section, path, label, goal, higher is better)
    (
        "embeddings",
        "ratios.tursi_8clients_vs_fp32_inprocess",
        "embeddings 8 clients: Tursi int8 / fp32 in-process",
        3.0,
        True,
    ),
    (
        "embeddings",
        "ratios.tursi_8clients_vs_raw_ort",
        "embeddings 8 clients: Tursi HTTP / raw onnxruntime",
        0.90,
        True,
    ),
    ("embeddings", "ratios.batching_1client_latency", "1 client p50 latency: batching on / off", 1.05, False),
    (
        "embeddings",
        "ratios.small_p95_with_big_vs_big_request",
        "small-request p95 during a maximum-size request / its duration",
        0.05,
        False,
    ),
    ("quality", "ratios.min_cosine", "int8 default vs fp32, held-out sentences: min cosine", 0.98, True),
    ("quality", "ratios.mean_cosine", "int8 default vs fp32, held-out sentences: mean cosine", 0.995, True),
    ("quality", "ratios.int8_vs_fp32_throughput", "int8 default / fp32 onnxruntime throughput", 2.0, True),
    ("llm", "ratios.decode_1client", "LLM 1 client decode: Tursi / llama-server", 0.97, True),
    ("llm", "ratios.aggregate_4clients", "LLM 4 clients aggregate tok/s: Tursi / llama-server", 1.0, True),
    ("llm", "ratios.p95_4clients", "LLM 4 clients p95 latency: Tursi / llama-server", 1.1, False),
    ("llm", "ratios.second_turn_ttft", "LLM chat 2nd-turn TTFT: Tursi / llama-server", 1.2, False),
    ("llm", "ratios.rss_idle", "LLM RSS idle: Tursi worker / llama-server", 1.0, False),
    ("llm", "ratios.rss_load", "LLM RSS under load: Tursi worker / llama-server", 1.0, False),
    (
        "llm",
        "neighbour_cost.ratio",
        "LLM stream beside a heavy JSON schema / beside plain text (worst)",
        1.25,
        False,
    ),
    ("gateway", "ratios.gateway_vs_direct_embeddings", "embeddings/s through the gateway / direct", 0.97, True),
    ("gateway", "ratios.gateway_vs_direct_llm_tokens", "LLM tokens/s through the gateway / direct", 0.97, True),
    ("footprint", "up_warm_s", "warm `tursi up` to ready (s)", 1.5, False),
    ("footprint", "tursid_fresh_rss_bytes", "tursid idle RSS, fresh start (MiB)", 40.0, False),
    ("footprint", "tursid_idle.rss_bytes_max", "tursid idle RSS, after serving (MiB)", 40.0, False),
    ("footprint", "ps_ms.median", "`tursi ps` wall time (ms)", 150.0, False),
]


def _get(report: dict[str, Any], section: str, path: str) -> Any:
    node: Any = report.get(section)
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Tursi benchmark ({report['mode']} mode, {report['started']})",
        "",
        f"Machine: {m['cpu']}, {m['arch']}, {m['cores']} physical / {m['logical']} logical cores, {m['mem_gib']} GiB; "
        f"features {', '.join(m['features'])}; Python {m['python']}; model threads {report['threads']}.",
        "",
        "| goal | figure | target | met |",
        "|---|---|---|---|",
    ]
    for section, path, label, goal, higher in GOALS:
        value = _get(report, section, path)
        if value is None:
            continue
        if "rss_bytes" in path:
            value = round(value / 2**20, 1)
        met = value >= goal if higher else value <= goal
        lines.append(f"| {label} | {value} | {'>=' if higher else '<='} {goal} | {'yes' if met else 'no'} |")
    if "embeddings" in report:
        e = report["embeddings"]
        lines += [
            "",
            f"## Embeddings ({e['model']}, {e['quantization']}, {e['sentences']} sentences, median of {e['runs']})",
            "",
            f"Workload: {e['workload']}.",
            "",
            "| side | sentences/s |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in e["sentences_per_s"].items()]
        lines += ["", "| latency | ms |", "|---|---|"] + [f"| {k} | {v} |" for k, v in e["latency_ms"].items()]
        lines += [
            "",
            f"Cosine vs fp32 (first 64 sentences, one batched request): min {e['cosine_vs_fp32']['min']}, "
            f"mean {e['cosine_vs_fp32']['mean']}. Worker RSS {e['worker_rss_bytes'] / 2**20:.0f} MiB.",
        ]
        lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in e["ratios"].items()]
    if "quality" in report:
        lines += _quality_lines(report["quality"])
    if "llm" in report:
        lines += _llm_lines(report["llm"])
    if "gateway" in report:
        g = report["gateway"]
        lines += [
            "",
            "## Gateway and replicas",
            "",
            "| figure | direct | gateway | gateway, 2 replicas |",
            "|---|---|---|---|",
        ]
        e, t = g["embeddings_per_s"], g["llm_tokens_per_s"]
        lines.append(f"| embeddings/s | {e['direct']:.1f} | {e['gateway']:.1f} | {e['gateway_2_replicas']:.1f} |")
        lines.append(f"| LLM tokens/s (4 clients) | {t['direct']:.1f} | {t['gateway']:.1f} | - |")
        lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in g["ratios"].items()]
    if "footprint" in report:
        f = report["footprint"]
        idle = f["tursid_idle"]
        lines += [
            "",
            "## Deployment time and footprint",
            "",
            f"- `tursi up minilm` cold (conversion included): {f['up_cold_s']} s; warm (cached artifact): "
            f"{f['up_warm_s']} s; `tursi up smollm2` (GGUF, linked): {f['up_gguf_s']} s",
            f"- `tursi ps`: median {f['ps_ms']['median']} ms, max {f['ps_ms']['max']} ms",
            f"- tursid at a fresh start: RSS {f['tursid_fresh_rss_bytes'] / 2**20:.1f} MiB",
            f"- tursid idle after serving, over {idle['seconds']} s: RSS {idle['rss_bytes_max'] / 2**20:.1f} MiB "
            f"(USS {idle['uss_bytes'] / 2**20:.1f} MiB), CPU {idle['cpu_percent']} % "
            f"(sampler every {idle['sample_interval_s']} s)",
        ]
    if "micro" in report:
        lines += ["", "## Micro-benchmarks (pytest-benchmark, median)", "", "| benchmark | µs |", "|---|---|"]
        lines += [f"| {k} | {v['median_us']} |" for k, v in report["micro"].items()]
    lines += [
        "",
        f"Total bench time {report['seconds']} s. Reproduce: `python -m bench` (full) or `python -m bench --quick`.",
        "",
    ]
    return "\n".join(lines)


def _quality_lines(q: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## int8 quality ({q['heldout_texts']} held-out sentences, {q['threads']} threads)",
        "",
        f"Artifact: {q['method']}. Cosine vs fp32 onnxruntime; throughput in length-sorted batches of 32.",
        "",
        "| model | texts/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in q["texts_per_s"].items()]
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in q["ratios"].items()]
    return lines


def _llm_lines(g: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## LLM ({g['model']}, {g['threads']} threads, context {g['ctx']}, {g['tokens']} tokens, {g['runs']} runs)",
        "",
        "| side | 1 client decode tok/s | TTFT ms | 4 clients tok/s | p50 s | p95 s | 2nd turn TTFT ms "
        "| RSS idle / load MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side in ("tursi", "llama_server"):
        f, c = g[side], g[side]["clients4"]
        rss = f"{f['rss_idle_bytes'] / 2**20:.0f} / {f['rss_load_bytes'] / 2**20:.0f}"
        lines.append(
            f"| {side} | {f['decode_tok_s']} | {f['ttft_ms']} | {c['aggregate_tok_s']} | {c['p50_s']} | {c['p95_s']} "
            f"| {f['second_turn_ttft_ms']} | {rss} |"
        )
    load = g.get("load_avg_1min", {})
    lines += ["", f"Machine load (1-min average) before / after: {load.get('before')} / {load.get('after')}."]
    if "neighbour_cost" in g:
        n = g["neighbour_cost"]
        b, r, nt = n["beside_s"], n["ratios"], n["neighbour_tokens"]
        lines += [
            "",
            f"Tursi, a plain {n['victim_tokens']}-token stream beside a neighbour sampling a 500-field date-time "
            f"schema: {b['dates']} s (ratio {r['dates']}); beside one picking 1,000 items from a 1,000-string enum: "
            f"{b['enum']} s (ratio {r['enum']}); beside one generating plain text: {b['plain']} s "
            f"(neighbours' tokens: {nt}).",
        ]
    return lines + ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in g["ratios"].items()]
