"""`tursi build`, `save`, `load`, `push`: bundles that carry a built model from a workstation to a device."""

from __future__ import annotations

import os
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.follow import follow
from tursi.cli.registry import auth_for, push_reference
from tursi.cli.spec_options import request_body, spec_options
from tursi.cli.transfer import fetch_bundle, send_bundle
from tursi.core.errors import InvalidSpec
from tursi.registry.reference import is_reference


@click.command("build")
@spec_options("source")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The .tursi file to write.")
@click.option(
    "--push",
    "push_ref",
    metavar="REF",
    help="Push to a registry instead (host[:port]/repository:tag); with --target a,b,c: one tag for all of them.",
)
@spec_options("conversion")
@click.option("--name", help="Name stored in the bundle (default: from the model).")
@pass_cli
def build_cmd(cli: CliContext, output: str | None, push_ref: str | None, name: str | None, **params: Any) -> None:
    """Convert MODEL for a device profile and write it as a .tursi bundle, or push it (no deployment)."""
    if push_ref is not None:
        build_and_push(cli, push_ref, params)
        return
    if output is None or not output.endswith(".tursi"):
        raise InvalidSpec("the output file (-o) must end in .tursi, or give --push REF", param="output")
    body = request_body(params, "source", "conversion")
    event = follow(lambda on_event: cli.client.build(body, on_event))
    manifest = event["manifest"]
    size = fetch_bundle(cli, event["key"], output, name or event["name"])
    quant = manifest.get("quantization") or manifest.get("plan", {}).get("quantization")
    render.out(
        f"built {output}: {manifest['plan']['format']} {quant} for {event['target']}, "
        f"{render.human_size(size)} (artifact {event['key'][:12]})"
    )


def build_and_push(cli: CliContext, ref: str, params: dict[str, Any]) -> None:
    """Build for each of ``--target a,b,c`` (or this machine), then push one tag: an index when several."""
    targets = [t.strip() for t in (params.get("target") or "").split(",") if t.strip()] or [None]
    keys = []
    for target in targets:
        event = _build(cli, request_body({**params, "target": target}, "source", "conversion"))
        keys.append(event["key"])
        render.out(f"built {event['key'][:12]} for {event['target']}")
    if len(keys) == 1:
        cli.client.registry_tag(keys[0], ref)
        push_reference(cli, ref)
        return
    answer = cli.client.registry_push_index(ref, keys, auth_for(cli, ref))
    render.out(
        f"{answer['reference']}: index {answer['digest']} for {', '.join(str(t) for t in targets)} "
        f"({answer['blobs_uploaded']} blobs, {render.human_size(answer['bytes_uploaded'])} uploaded)"
    )


def _build(cli: CliContext, body: dict[str, Any]) -> Any:
    return follow(lambda on_event: cli.client.build(body, on_event))


@click.command("save")
@click.argument("what", metavar="NAME|KEY")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .tursi file to write.")
@pass_cli
def save_cmd(cli: CliContext, what: str, output: str) -> None:
    """Export a deployment's artifact (or an artifact by key) as a .tursi bundle."""
    deps = cli.client.deployments(all=True)
    dep = next((d for d in deps if d["name"] == what), None)
    key, name = (dep["artifact_key"], dep["name"]) if dep else (what, None)
    size = fetch_bundle(cli, key, output, name)
    render.out(f"saved {output} ({render.human_size(size)})")


@click.command("load")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Load even if the bundle was built for other hardware.")
@pass_cli
def load_cmd(cli: CliContext, bundle: str, force: bool) -> None:
    """Import a .tursi bundle into the daemon (checked in full before anything is kept)."""
    send_bundle(cli, bundle, force)


@click.command("push")
@click.argument("what")
@click.option("--force", is_flag=True, help="A bundle: load it even if it was built for other hardware.")
@pass_cli
def push_cmd(cli: CliContext, what: str, force: bool) -> None:
    """Push WHAT: a .tursi file (an existing path) goes to a remote daemon (TURSI_HOST, --daemon or the current
    context); a registry reference (host[:port]/repository:tag, named with `tursi tag`) goes to that registry."""
    bundle = what
    if not os.path.isfile(what):
        if not is_reference(what):
            raise InvalidSpec(
                f"{what!r} is neither a file nor a registry reference",
                param="what",
                hint="a .tursi file to send to a daemon, or host[:port]/repository:tag (see `tursi tag`)",
            )
        push_reference(cli, what)
        return
    if cli.client.scheme == "unix":
        raise InvalidSpec(
            "push sends to a remote tursid, and the current daemon is this machine's",
            param="daemon",
            hint="set TURSI_HOST=https://device:8765 (and TURSI_TOKEN), or `tursi context use NAME`; "
            "`tursi load` imports locally",
        )
    send_bundle(cli, bundle, force)


COMMANDS = [build_cmd, save_cmd, load_cmd, push_cmd]
