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
@click.option("--since", metavar="WHEN", help="Only lines since a duration ago (10m, 2h) or a time (RFC 3339).")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time (RFC 3339, UTC).")
@pass_cli
def logs_cmd(
    cli: CliContext, name: str | None, follow: bool, tail: int | None, since: str | None, timestamps: bool
) -> None:
    """Print the logs of NAME (or of the only deployment), rotated files included."""
    target = pick_one(cli, name)
    for line in cli.client.logs(target, follow=follow, tail=tail, since=since, timestamps=timestamps):
        render.write_raw(line)


COMMANDS = [logs_cmd]
