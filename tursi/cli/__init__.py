"""The `tursi` command line: a client of tursid's control API. Imports no ML library."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from tursi import __version__
from tursi.cli import (
    bundles,
    compose,
    contexts,
    down,
    images,
    loading,
    logs,
    pack,
    ps,
    registry,
    stats,
    system,
    ui,
    up,
)
from tursi.cli.context import CliContext
from tursi.cli.render import error
from tursi.core.errors import InternalError, TursiError, classify
from tursi.core.settings import Settings, debug_from


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--daemon",
    "daemon_url",
    metavar="URL",
    help="tursid address: unix:///path or http(s)://host:port (default: TURSI_HOST, else the local socket).",
)
@click.version_option(__version__, prog_name="tursi")
@click.pass_context
def cli(ctx: click.Context, daemon_url: str | None) -> None:
    """Tursi: deploy Hugging Face models to this machine, converted for its hardware."""
    ctx.obj = CliContext(Settings.load(os.environ), daemon_url)


for module in (up, ps, down, loading, logs, stats, system, images, bundles, contexts, pack, compose, registry, ui):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: maps every error to one human line and a stable exit status."""
    try:
        return cli.main(args=argv, prog_name="tursi", standalone_mode=False)
    except click.exceptions.Abort:
        error("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except TursiError as e:
        error(e.detail, e.hint, e.extra.get("log_tail") or ())
        sys.exit(classify(e).exit_code if type(e) is TursiError else e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if debug_from(os.environ):  # TURSI_DEBUG=0 (or false, no, off) is off
            traceback.print_exc()
        error(f"internal error: {type(e).__name__}: {e}", "set TURSI_DEBUG=1 for the traceback")
        sys.exit(InternalError.exit_code)
