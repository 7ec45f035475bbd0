"""`tursi up`: convert (or reuse) and start a deployment."""

from __future__ import annotations

from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.client import problem_to_error


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
    help="int8 quantization scheme (static: not implemented yet).",
)
@click.option(
    "--bits",
    type=click.Choice(["4", "8"]),
    default="8",
    show_default=True,
    help="Weight bits (4: not implemented yet).",
)
@pass_cli
def up_cmd(
    cli: CliContext, model: str, name: str | None, port: int | None, host: str, quantization: str, bits: str
) -> None:
    """Deploy MODEL: an alias (minilm), a Hugging Face folder, a .gguf file or a hub id."""
    body: dict[str, Any] = {
        "model": model,
        "name": name,
        "port": port,
        "host": host,
        "quantization": quantization,
        "bits": int(bits),
    }
    progress = render.Progress()
    ok = False
    try:
        for event in cli.client.stream_events(
            "POST", "/v1/deployments", {k: v for k, v in body.items() if v is not None}
        ):
            kind = event.get("event")
            if kind == "stage":
                progress.stage(f"[{event['step']}/{event['steps']}] {event['message']}")
            elif kind in ("status", "cached"):
                progress.stage(event["message"])
            elif kind == "error":
                progress.close(ok=False)
                raise problem_to_error(event)
            elif kind == "ready":
                ok = True
                progress.close(ok=True)
                dep = event["deployment"]
                render.out(f"{dep['name']} is ready: {dep['endpoint']}")
                return
    finally:
        progress.close(ok=ok)
    raise click.ClickException("tursid closed the stream before the deployment was ready; see `tursi logs`")


COMMANDS = [up_cmd]
