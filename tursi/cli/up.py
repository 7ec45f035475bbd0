"""`tursi up`: convert (or reuse) and start a deployment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.transfer import send_bundle
from tursi.client.control import problem_to_error
from tursi.core.errors import DaemonUnavailable
from tursi.core.refs import ALIASES


@click.command("up")
@click.argument("model")
@click.option("--name", help="Deployment name (default: from the model).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port for the inference API (default: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the inference API binds.")
@click.option(
    "--quantization",
    type=click.Choice(["dynamic", "static"]),
    default="dynamic",
    show_default=True,
    help="dynamic, or static (encoders: int8 calibrated on --calibration or a bundled set; GGUF: not yet).",
)
@click.option(
    "--bits",
    type=click.Choice(["4", "8"]),
    help="Weight bits. Default: 8 for encoders (ONNX int8), 4 for LLMs (GGUF Q4_K_M on x86, Q4_0 on ARM); "
    "a quantized .gguf is served as is unless --bits is given. --bits 4 on an encoder: ONNX int4 MatMulNBits.",
)
@click.option("--threads", type=click.IntRange(1, 1024), help="Inference threads (default: physical cores).")
@click.option(
    "--ctx-size", type=click.IntRange(16, 1 << 20), help="LLM context in tokens (default: min(4096, trained)."
)
@click.option(
    "--max-queue",
    type=click.IntRange(0, 4096),
    help="Requests that may wait for the model (default 32); more get 503 with Retry-After.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 1024),
    help="Encoders: most texts one model run takes when concurrent requests are coalesced (default 32; 1: off).",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(0, 1000),
    help="Encoders: once requests coalesce, how long a batch waits for more (default 2; a lone request never waits).",
)
@click.option(
    "--target",
    metavar="PROFILE",
    help="Plan for a target profile (rpi4, rpi5, jetson-orin-nano, x86-64-v3, x86-64-v4) instead of this machine.",
)
@click.option(
    "--min-quality",
    type=click.FloatRange(0, 1),
    help="Quality guard: least min cosine (encoders, "
    "default 0.85) or greedy agreement (LLMs, default 0.50) vs fp32; below it, fall back to a safer scheme.",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="Text file (one sample per line) to calibrate --quantization static.",
)
@click.option("--revision", help="Hub revision (branch, tag or commit) for a hub id.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weights (.bin/.pt) for sources you trust.")
@click.option(
    "--rate-limit",
    metavar="SPEC",
    help="Per-client limit: N/second|minute|hour[;burst=M] "
    "(API key when sent, else address); over it: 429 with Retry-After.",
)
@click.option(
    "--restart",
    default="no",
    show_default=True,
    metavar="POLICY",
    help="no | on-failure[:N] | always | unless-stopped (backoff from 100 ms, doubling, capped at 30 s).",
)
@click.option("--health-interval", type=click.FloatRange(0.1), help="Seconds between /ready probes (default 10).")
@click.option("--health-timeout", type=click.FloatRange(0.1), help="Seconds one probe may take (default 2).")
@click.option("--health-retries", type=click.IntRange(1), help="Failed probes before unhealthy (default 3).")
@click.option(
    "--health-start-period",
    type=click.FloatRange(0),
    help="Seconds after start when failures do not count (default 0).",
)
@click.option(
    "--restart-on-unhealthy",
    is_flag=True,
    help="Restart the worker when it turns unhealthy (Docker never does; opt in here).",
)
@click.option(
    "--api-key",
    metavar="KEY|auto",
    help="Require this API key (Bearer) on the inference routes; "
    "'auto' generates one and prints it once. /health, /ready and /metrics stay open.",
)
@pass_cli
def up_cmd(
    cli: CliContext,
    model: str,
    name: str | None,
    port: int | None,
    host: str,
    quantization: str,
    bits: str | None,
    threads: int | None,
    ctx_size: int | None,
    max_queue: int | None,
    max_batch: int | None,
    batch_wait_ms: float | None,
    target: str | None,
    min_quality: float | None,
    calibration: str | None,
    revision: str | None,
    allow_pickle: bool,
    rate_limit: str | None,
    restart: str,
    health_interval: float | None,
    health_timeout: float | None,
    health_retries: int | None,
    health_start_period: float | None,
    restart_on_unhealthy: bool,
    api_key: str | None,
) -> None:
    """Deploy MODEL: an alias (minilm, smollm2), a Hugging Face folder, a .gguf file, a hub id,
    a .tursi bundle or the key of a built artifact (see `tursi images`)."""
    body: dict[str, Any] = {
        "model": model,
        "name": name,
        "port": port,
        "host": host,
        "quantization": quantization,
        "bits": int(bits) if bits else None,
        "threads": threads,
        "ctx_size": ctx_size,
        "max_queue": max_queue,
        "max_batch": max_batch,
        "batch_wait_ms": batch_wait_ms,
        "target": target,
        "min_quality": min_quality,
        "calibration": calibration,
        "revision": revision,
        "allow_pickle": allow_pickle,
        "rate_limit": rate_limit,
        "restart": restart,
        "health_interval": health_interval,
        "health_timeout": health_timeout,
        "health_retries": health_retries,
        "health_start_period": health_start_period,
        "restart_on_unhealthy": restart_on_unhealthy,
        "api_key": api_key,
    }
    body["model"] = model = local_reference(model)
    if model.endswith(".tursi") and os.path.isfile(model):  # a bundle: load it, then deploy what it holds
        loaded = send_bundle(cli, model, force=False)
        body["model"] = loaded["key"]
        body["quantization"] = None  # decided when it was built
    event = follow(cli, "/v1/deployments", {k: v for k, v in body.items() if v is not None}, "ready")
    dep = event["deployment"]
    render.out(f"{dep['name']} is ready: {dep['endpoint']}")
    for warning in dep.get("warnings") or ():
        render.out(f"WARNING: {warning}", err=True)
    if event.get("api_key"):
        render.out(f"API key (shown once, store it now): {event['api_key']}")


def local_reference(model: str) -> str:
    """A reference naming a file or folder that exists here, made absolute: tursid resolves paths against its
    own working directory, not this shell's. Aliases win over a folder of the same name, as in tursid; anything
    else (a hub id, an artifact key) is sent as typed."""
    if model.strip().lower() in ALIASES:
        return model
    try:
        path = Path(model).expanduser()
        return os.path.abspath(path) if path.exists() else model  # lexical: a link keeps its own name
    except (RuntimeError, ValueError, OSError):  # an unknown ~user, a name too long: not a local path
        return model


def follow(cli: CliContext, path: str, body: dict[str, Any], final: str) -> dict[str, Any]:
    """POST and render an NDJSON progress stream; returns the ``final`` event, raises the streamed error."""
    progress = render.Progress()
    ok = False
    try:
        for event in cli.client.stream_events("POST", path, body):
            kind = event.get("event")
            if kind == "stage":
                progress.stage(f"[{event['step']}/{event['steps']}] {event['message']}")
            elif kind in ("status", "cached"):
                progress.stage(event["message"])
            elif kind == "error":
                progress.close(ok=False)
                raise problem_to_error(event)
            elif kind == final:
                ok = True
                progress.close(ok=True)
                return event
    finally:
        progress.close(ok=ok)
    raise DaemonUnavailable(
        "tursid closed the connection before it finished (did it stop?)", hint="check `tursi ps -a` and its log"
    )


COMMANDS = [up_cmd]
