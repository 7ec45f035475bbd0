"""`tursi stop` and `tursi start`: unload a deployment's model and load it again, by hand (Docker's verbs; the
keep-alive does the same on its own)."""

from __future__ import annotations

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli


@click.command("stop")
@click.argument("names", nargs=-1, required=True)
@pass_cli
def stop_cmd(cli: CliContext, names: tuple[str, ...]) -> None:
    """Unload NAME...: the worker stops and frees its memory; the deployment stays, idle, on its port, and the
    next request (or `tursi start`) loads it again."""
    for name in names:
        cli.client.stop(name)
        render.out(name)


@click.command("start")
@click.argument("names", nargs=-1, required=True)
@pass_cli
def start_cmd(cli: CliContext, names: tuple[str, ...]) -> None:
    """Load NAME... (idle, exited or failed) and wait until it is ready."""
    for name in names:
        dep = cli.client.start(name)
        took = dep.get("load_seconds") or 0.0
        render.out(f"{name}" + (f" (loaded in {took:.1f}s)" if took else " (already loaded)"))


COMMANDS = [stop_cmd, start_cmd]
