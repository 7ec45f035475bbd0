"""`tursi compose`: the ``models:`` of a Compose file as one project of deployments (up, down, ps, logs, config).

``-f FILE`` and ``-p NAME`` go before or after the subcommand (`tursi compose -f app.yaml up` as in Docker, or
`tursi compose up -f app.yaml`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.follow import follow
from tursi.cli.ps import HEADERS, row
from tursi.compose.converge import CREATE, KEEP, RECREATE, REMOVE, Action, of_project, plan_up
from tursi.compose.project import ComposeProject, load_project, normalize_project_name, project_name, request_body
from tursi.compose.source import DEFAULT_FILES, find_file
from tursi.core.errors import DeploymentNotFound

F = TypeVar("F", bound=Callable[..., Any])
_GIVEN = "tursi.compose.given"  # -f / -p given before the subcommand


def file_options(command: F) -> F:
    return _file_options(command, "-f")


def _file_options(command: F, *short: str) -> F:
    """-f/--file and -p/--project-name; `logs` keeps -f for --follow, as Docker's does."""
    command = click.option(
        "-p",
        "--project-name",
        "project",
        metavar="NAME",
        help="Project name (default: the file's name:, else its folder).",
    )(command)
    return click.option(
        *short, "--file", "file", metavar="FILE", help=f"Compose file (default: {', '.join(DEFAULT_FILES)} here)."
    )(command)


@click.group("compose")
@file_options
@click.pass_context
def compose_cmd(ctx: click.Context, file: str | None, project: str | None) -> None:
    """Deploy the models: of a Compose file (model, context_size, runtime_flags; Tursi's options under x-tursi)
    as one project; `up` again redeploys only what changed."""
    ctx.meta[_GIVEN] = (file, project)


def _given(file: str | None, project: str | None) -> tuple[str | None, str | None]:
    before = click.get_current_context().meta.get(_GIVEN, (None, None))
    return file or before[0], project or before[1]


def _load(file: str | None, project: str | None) -> ComposeProject:
    file, project = _given(file, project)
    return load_project(find_file(file, Path.cwd()), os.environ, project)


def _project_name(file: str | None, project: str | None) -> str:
    file, project = _given(file, project)
    if project is not None:  # no file needed, as `docker compose -p NAME down`
        return normalize_project_name(project)
    return project_name(find_file(file, Path.cwd()), os.environ)


@compose_cmd.command("up")
@file_options
@pass_cli
def up_cmd(cli: CliContext, file: str | None, project: str | None) -> None:
    """Converge the daemon to the file: create what is new, redeploy what changed, leave the rest running and
    remove the project's deployments the file no longer has."""
    proj = _load(file, project)
    for warning in proj.warnings:
        render.out(f"WARNING: {warning}", err=True)
    for action in plan_up(proj, cli.client.deployments(all=True)):
        _apply(cli, proj.name, action)


def _apply(cli: CliContext, project: str, action: Action) -> None:
    if action.kind == KEEP:
        render.out(f"{action.name} is up to date")
        return
    if action.kind in (REMOVE, RECREATE):
        cli.client.down(action.name)
        if action.kind == REMOVE:
            render.out(f"{action.name} removed ({action.reason})")
            return
        render.out(f"{action.name} is redeployed ({action.reason})")
    if action.model is not None and action.kind in (CREATE, RECREATE):
        body = request_body(action.model, project)
        dep = follow(lambda on_event: cli.client.up(body, on_event))["deployment"]
        render.out(f"{dep['name']} is ready: {dep['endpoint']}")
        for warning in dep.get("warnings") or ():
            render.out(f"WARNING: {warning}", err=True)


@compose_cmd.command("down")
@file_options
@pass_cli
def down_cmd(cli: CliContext, file: str | None, project: str | None) -> None:
    """Stop and remove the project's deployments (and no other)."""
    name = _project_name(file, project)
    for dep in of_project(cli.client.deployments(all=True), name):
        for removed in cli.client.down(dep["name"]):
            render.out(removed)


@compose_cmd.command("ps")
@file_options
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped and failed deployments too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_cli
def ps_cmd(cli: CliContext, file: str | None, project: str | None, show_all: bool, fmt: str) -> None:
    """List the project's deployments."""
    deps = of_project(cli.client.deployments(all=show_all), _project_name(file, project))
    if fmt == "json":
        render.as_json(deps)
        return
    now = time.time()
    render.out(render.table(HEADERS, [row(d, now) for d in deps]))


@compose_cmd.command("logs")
@click.argument("names", nargs=-1)
@lambda command: _file_options(command)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the deployments stop.")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Only the last N lines of each.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time (RFC 3339, UTC).")
@pass_cli
def logs_cmd(
    cli: CliContext,
    names: tuple[str, ...],
    file: str | None,
    project: str | None,
    follow: bool,
    tail: int | None,
    timestamps: bool,
) -> None:
    """Print the logs of the project's deployments (or of NAMES), each line prefixed with its deployment's name.
    -f is --follow here, as in Docker: give the file as --file, or -f before `logs`."""
    name = _project_name(file, project)
    mine = [d["name"] for d in of_project(cli.client.deployments(all=True), name)]
    for n in names:
        if n not in mine:
            raise DeploymentNotFound(f"project {name!r} has no deployment {n!r}", hint=f"it has: {', '.join(mine)}")
    targets = list(names) or mine
    width = max((len(n) for n in targets), default=0)

    def show(target: str) -> None:
        prefix = f"{target:<{width}} | "
        for line in cli.client.logs(target, follow=follow, tail=tail, timestamps=timestamps):
            render.write_prefixed(prefix, line)

    if follow:
        _all_at_once(show, targets)
    else:
        for target in targets:
            show(target)


def _all_at_once(show: Callable[[str], None], targets: list[str]) -> None:
    """``show`` for every target in its own thread (followed streams never end on their own); the first error
    one of them raised is raised here once all have ended."""
    errors: list[BaseException] = []

    def run(target: str) -> None:
        try:
            show(target)
        except Exception as e:  # re-raised below, in the command's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@compose_cmd.command("config")
@file_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Only check the file: exit status 0 when it is valid.")
@click.option("--hash", "hashes", is_flag=True, help="Print each model's configuration hash (what `up` compares).")
def config_cmd(file: str | None, project: str | None, fmt: str, quiet: bool, hashes: bool) -> None:
    """Check the file and print it normalized: interpolated, values in their canonical form, runtime flags as the
    options they set. API keys never show, only where they are read from."""
    proj = _load(file, project)
    for warning in proj.warnings:
        render.out(f"WARNING: {warning}", err=True)
    if quiet:
        return
    if hashes:
        render.out("\n".join(f"{m.name} {m.config_hash}" for m in proj.models))
    elif fmt == "json":
        render.out(json.dumps(proj.normalized(), indent=2))
    else:
        render.out(yaml.safe_dump(proj.normalized(), sort_keys=False, allow_unicode=True).rstrip("\n"))


COMMANDS = [compose_cmd]
