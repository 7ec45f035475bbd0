"""`tursi images`, `tursi rmi`, `tursi prune`: the artifact cache, like Docker's images."""

from __future__ import annotations

import time

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli

HEADERS = ("KEY", "SOURCE", "FORMAT", "QUANT", "SIZE", "CREATED", "USED BY")


@click.command("images")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def images_cmd(cli: CliContext, fmt: str) -> None:
    """List converted artifacts in the cache."""
    arts = cli.client.artifacts()
    if fmt == "json":
        render.as_json(arts)
        return
    now = time.time()
    rows = [
        [
            a["key"][:12],
            f"DAMAGED: {a['damaged']}" if a.get("damaged") else a["source"],
            a["format"],
            a["quantization"],
            render.human_size(a["size_bytes"]),
            f"{render.human_duration(now - (a['created_at'] or now))} ago" if a["created_at"] else "-",
            ", ".join(a["used_by"]) or "-",
        ]
        for a in arts
    ]
    render.out(render.table(HEADERS, rows))
    if any(a.get("damaged") for a in arts):
        render.out("damaged artifacts cannot be deployed or saved: `tursi rmi KEY` removes one", err=True)


@click.command("rmi")
@click.argument("key")
@pass_cli
def rmi_cmd(cli: CliContext, key: str) -> None:
    """Remove an artifact (by key prefix) that no deployment uses."""
    body = cli.client.remove_artifact(key)
    render.out(f"removed {body['removed'][0][:12]} ({render.human_size(body['freed_bytes'])})")


@click.command("prune")
@pass_cli
def prune_cmd(cli: CliContext) -> None:
    """Remove every artifact no deployment uses, and what registry pulls left beside the cache."""
    body = cli.client.prune()
    for key in body["removed"]:
        render.out(f"removed {key[:12]}")
    render.out(f"freed {render.human_size(body['freed_bytes'])}")


COMMANDS = [images_cmd, rmi_cmd, prune_cmd]
