"""`tursi stats`: live CPU, memory and request counts per deployment, like `docker stats`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli

HEADERS = ("NAME", "PID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "REQUESTS")


def format_snapshot(snap: dict[str, Any]) -> str:
    rows = [
        [
            d["name"],
            d["pid"],
            f"{d['cpu_percent']:.1f}%",
            f"{render.human_size(d['mem_bytes'])} / {render.human_size(d['mem_limit_bytes'])}",
            f"{d['mem_percent']:.2f}%",
            "-" if d.get("requests") is None else d["requests"],
        ]
        for d in snap["deployments"]
    ]
    s = snap["system"]
    load = " ".join(f"{x:.2f}" for x in s["load"])
    system = (
        f"SYSTEM  cpus {s['cpu_count']}  cpu {s['cpu_percent']:.1f}%  load {load}  "
        f"mem {render.human_size(s['mem_used_bytes'])} / {render.human_size(s['mem_total_bytes'])} "
        f"({s['mem_percent']:.1f}%)"
    )
    return render.table(HEADERS, rows) + "\n" + system


@click.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def stats_cmd(cli: CliContext, no_stream: bool, fmt: str) -> None:
    """Resource use of running deployments, sampled by tursid."""
    if no_stream:
        snap = cli.client.request("GET", "/v1/stats")
        render.as_json(snap) if fmt == "json" else render.out(format_snapshot(snap))
        return
    tty = sys.stdout.isatty()
    for snap in cli.client.stream_events("GET", "/v1/stats", query={"stream": 1}):
        if fmt == "json":
            render.out(json.dumps(snap, sort_keys=True))
        elif tty:
            render.out("\x1b[H\x1b[2J" + format_snapshot(snap))
        else:
            render.out(format_snapshot(snap) + "\n")


COMMANDS = [stats_cmd]
