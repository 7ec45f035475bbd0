"""`tursi system`: the daemon's view of this machine (hardware profile, versions)."""

from __future__ import annotations

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli


@click.command("system")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def system_cmd(cli: CliContext, fmt: str) -> None:
    """Hardware profile and versions of the machine tursid runs on."""
    info = cli.client.system()
    if fmt == "json":
        render.as_json(info)
        return
    hw = info["hardware"]
    rows = [
        ("Arch", hw["arch"]),
        ("SIMD", ", ".join(hw["features"]) or "none detected"),
        ("Cores", f"{hw['physical_cores']} physical, {info['cpu_count_logical']} logical"),
        ("Memory", render.human_size(hw["mem_total_bytes"])),
        ("Device", hw["device"] or "-"),
        ("GPU", hw["gpu"] or "-"),
        ("Tursi", f"{info['version']} (python {info['python']}, schema {info['schema_version']})"),
        ("Home", info["home"]),
        ("Targets", ", ".join(info["target_profiles"])),
    ]
    width = max(len(k) for k, _ in rows)
    render.out("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))


COMMANDS = [system_cmd]
