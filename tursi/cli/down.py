"""`tursi down`: stop and remove deployments."""

from __future__ import annotations

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.ps import pick_one
from tursi.core.errors import InvalidSpec


@click.command("down")
@click.argument("name", required=False)
@click.option("--all", "down_all", is_flag=True, help="Stop and remove every deployment.")
@pass_cli
def down_cmd(cli: CliContext, name: str | None, down_all: bool) -> None:
    """Stop and remove NAME (or the only deployment, or --all)."""
    if down_all and name:
        raise InvalidSpec("give a NAME or --all, not both")
    if down_all:
        removed = cli.client.down_all()
    else:
        target = pick_one(cli, name)
        removed = cli.client.down(target)
    for n in removed:
        render.out(n)


COMMANDS = [down_cmd]
