"""`tursi logs`: a deployment's worker output and lifecycle events."""

from __future__ import annotations

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.ps import pick_one


@click.command("logs")
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the deployment stops.")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@pass_cli
def logs_cmd(cli: CliContext, name: str | None, follow: bool, tail: int | None) -> None:
    """Print the logs of NAME (or of the only deployment)."""
    target = pick_one(cli, name)
    query = {"tail": tail, "follow": 1 if follow else None}
    for line in cli.client.stream_lines("GET", f"/v1/deployments/{cli.client.quote(target)}/logs", query=query):
        render.write_raw(line)


COMMANDS = [logs_cmd]
