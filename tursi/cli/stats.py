"""`tursi stats`: live CPU, memory and request counts per deployment, like `docker stats`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.client.types import StatsSnapshot

HEADERS = ("NAME", "PID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "REQ/S", "P50", "P95", "TOK/S", "429", "REQUESTS")


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return ">30s" if seconds == float("inf") else f"<={seconds * 1000:.0f}ms"


def format_snapshot(snap: StatsSnapshot) -> str:
    rows = [
        [
            d["name"],
            d["pid"],
            f"{d['cpu_percent']:.1f}%",
            f"{render.human_size(d['mem_bytes'])} / {render.human_size(d['mem_limit_bytes'])}",
            f"{d['mem_percent']:.2f}%",
            _num(d.get("requests_per_s"), "{:.1f}"),
            _ms(d.get("p50_s")),
            _ms(d.get("p95_s")),
            _num(d.get("tokens_per_s"), "{:.0f}"),
            _num(d.get("rate_limited"), "{}"),
            _num(d.get("requests"), "{}"),
        ]
        for d in snap["deployments"]
    ]
    s = snap["system"]
    load = " ".join(f"{x:.2f}" for x in s["load"])
    temp = f"  temp {s['max_temperature_c']:.1f}C" if s.get("max_temperature_c") is not None else ""
    throttled = s.get("throttling") or {}
    flags = [k for k in ("under_voltage", "freq_capped", "throttled", "soft_temp_limit") if throttled.get(k)]
    system = (
        f"SYSTEM  cpus {s['cpu_count']}  cpu {s['cpu_percent']:.1f}%  load {load}  "
        f"mem {render.human_size(s['mem_used_bytes'])} / {render.human_size(s['mem_total_bytes'])} "
        f"({s['mem_percent']:.1f}%){temp}" + (f"  THROTTLING: {', '.join(flags)}" if flags else "")
    )
    return render.table(HEADERS, rows) + "\n" + system


@click.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def stats_cmd(cli: CliContext, no_stream: bool, fmt: str) -> None:
    """Resource use of running deployments, sampled by tursid."""
    if no_stream:
        snap = cli.client.stats()
        render.as_json(snap) if fmt == "json" else render.out(format_snapshot(snap))
        return
    tty = sys.stdout.isatty()
    for snap in cli.client.stats_stream():
        if fmt == "json":
            render.out(json.dumps(snap, sort_keys=True))
        elif tty:
            render.out(format_snapshot(snap), clear=True)
        else:
            render.out(format_snapshot(snap) + "\n")


COMMANDS = [stats_cmd]
