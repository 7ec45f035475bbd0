"""`tursi ps` and `tursi inspect`."""

from __future__ import annotations

import time
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.client.types import Deployment

HEADERS = ("NAME", "MODEL", "FORMAT", "QUANT", "ENDPOINT", "STATUS", "UPTIME", "MEM")


def status_text(dep: Deployment, now: float) -> str:
    restarts = dep.get("restart_count") or 0
    suffix = f" ({restarts} restart{'s' if restarts != 1 else ''})" if restarts else ""
    health = f" ({dep['health']})" if dep.get("health") and dep["status"] == "running" else ""
    return _status_word(dep, now) + health + suffix


def _status_word(dep: Deployment, now: float) -> str:
    status = dep["status"]
    if status == "running":
        return "Up"
    if status == "starting":
        return "Starting"
    if status == "restarting":
        return "Restarting"
    if status == "idle":
        return "Idle (unloaded)"
    if status in ("exited", "failed"):
        code = dep.get("exit_code")
        ago = render.human_duration(now - (dep.get("finished_at") or now))
        label = "Exited" if status == "exited" else "Failed"
        return f"{label} ({code if code is not None else '?'}) {ago} ago"
    return status.capitalize()


def row(dep: Deployment, now: float) -> list[Any]:
    started = dep.get("started_at") if dep["status"] in ("running", "starting", "restarting") else None
    return [
        dep["name"],
        dep["model"],
        dep["format"],
        dep["quantization"],
        dep["endpoint"] + (" (open: no api key)" if dep.get("warnings") else ""),
        status_text(dep, now),
        render.human_duration(now - started) if started else "-",
        _mem(dep),
    ]


def _mem(dep: Deployment) -> str:
    """Resident memory, and its share of tursid's memory budget (what an idle one would need to load)."""
    held, budget = dep.get("mem_bytes"), dep.get("mem_budget_bytes")
    if held and budget:
        return f"{render.human_size(held)} ({100 * held / budget:.0f}%)"
    need = dep.get("mem_need_bytes")
    return f"({render.human_size(need)})" if dep["status"] == "idle" and need else render.human_size(held)


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped and failed deployments too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def ps_cmd(cli: CliContext, show_all: bool, fmt: str) -> None:
    """List deployments."""
    deps = cli.client.deployments(all=show_all)
    if fmt == "json":
        render.as_json(deps)
        return
    now = time.time()
    render.out(render.table(HEADERS, [row(d, now) for d in deps]))
    for dep in deps:
        for warning in dep.get("warnings") or ():
            render.out(f"WARNING: {warning}", err=True)


@click.command("inspect")
@click.argument("name")
@pass_cli
def inspect_cmd(cli: CliContext, name: str) -> None:
    """Show everything about one deployment as JSON: plan, manifest, events."""
    render.as_json(cli.client.deployment(name))


def pick_one(cli: CliContext, name: str | None) -> str:
    """NAME, or the only deployment when there is exactly one."""
    if name:
        return name
    from tursi.core.errors import AmbiguousDeployment

    deps = cli.client.deployments(all=True)
    if len(deps) == 1:
        return str(deps[0]["name"])
    if not deps:
        raise AmbiguousDeployment("there are no deployments", hint="tursi up minilm")
    names = ", ".join(d["name"] for d in deps)
    raise AmbiguousDeployment(f"{len(deps)} deployments ({names}): say which one", hint="give a NAME")


COMMANDS = [ps_cmd, inspect_cmd]
