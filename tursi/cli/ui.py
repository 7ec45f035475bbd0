"""`tursi ui`: the dashboard's one-time login link (and, with --open, the browser opened on it)."""

from __future__ import annotations

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli


@click.command("ui")
@click.option("--open", "open_browser", is_flag=True, help="Open the link in the default browser.")
@pass_cli
def ui_cmd(cli: CliContext, open_browser: bool) -> None:
    """Print a one-time login link to the dashboard (served by tursid on loopback, TURSI_UI)."""
    answer = cli.client.ui_login_token()
    url = str(answer["url"])
    render.out(url)
    render.out(f"(valid once, for {int(answer['expires_in_s'])} s; it logs this browser in for 12 hours)", err=True)
    if open_browser:
        import webbrowser

        if not webbrowser.open(url):
            render.out("no browser could be opened here: open the link above yourself", err=True)


COMMANDS = [ui_cmd]
