"""`tursi context create|use|ls|rm`: named daemons, like `docker context`."""

from __future__ import annotations

import os

import click

from tursi.cli import render
from tursi.cli.context import CliContext
from tursi.client.contexts import ContextStore
from tursi.core.settings import Settings


def _store() -> ContextStore:
    cli = click.get_current_context().find_object(CliContext)  # set by the `tursi` group
    settings = cli.settings if cli is not None else Settings.load(os.environ)
    return ContextStore(settings.contexts_path)


@click.group("context")
def context_group() -> None:
    """Manage named daemons (the current one is used when neither --daemon nor TURSI_HOST is given)."""


@context_group.command("create")
@click.argument("name")
@click.option("--host", required=True, help="unix:///path or http(s)://host:port")
@click.option("--token", help="Control token for a TCP daemon (kept in the 0600 contexts file).")
@click.option("--tls-fingerprint", metavar="SHA256", help="Pin the daemon's certificate (tursid prints it at start).")
@click.option(
    "--tls-ca", type=click.Path(exists=True, dir_okay=False, resolve_path=True), help="CA file for its certificate."
)
def create_cmd(name: str, host: str, token: str | None, tls_fingerprint: str | None, tls_ca: str | None) -> None:
    """Create a context."""
    _store().create(name, host, token, tls_ca, tls_fingerprint)
    render.out(name)


@context_group.command("use")
@click.argument("name")
def use_cmd(name: str) -> None:
    """Make NAME current ('default' is the local daemon)."""
    _store().use(name)
    render.out(f"current context is now {name}")


@context_group.command("ls")
def ls_cmd() -> None:
    """List contexts; * marks the current one."""
    data = _store().load()
    rows = [["default" + (" *" if not data["current"] else ""), "local tursid (unix socket)"]]
    rows += [[n + (" *" if n == data["current"] else ""), c["host"]] for n, c in sorted(data["contexts"].items())]
    render.out(render.table(("NAME", "DAEMON"), rows))


@context_group.command("rm")
@click.argument("name")
def rm_cmd(name: str) -> None:
    """Remove a context."""
    _store().remove(name)
    render.out(name)


COMMANDS = [context_group]
