"""`tursi up`: convert (or reuse) and start a deployment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.follow import follow
from tursi.cli.registry import auth_for
from tursi.cli.spec_options import request_body, spec_options
from tursi.cli.transfer import send_bundle
from tursi.core.refs import ALIASES
from tursi.registry.reference import is_reference

Final = TypeVar("Final")


@click.command("up")
@spec_options()
@pass_cli
def up_cmd(cli: CliContext, **params: Any) -> None:
    """Deploy MODEL: an alias (minilm, smollm2), a Hugging Face folder, a .gguf file, a hub id,
    a .tursi bundle or the key of a built artifact (see `tursi images`)."""
    body = request_body(params)
    body["model"] = model = local_reference(body["model"])
    if model.endswith(".tursi") and os.path.isfile(model):  # a bundle: load it, then deploy what it holds
        loaded = send_bundle(cli, model, force=False)
        body["model"] = loaded["key"]
        body.pop("quantization", None)  # decided when it was built
    if is_reference(model):  # the daemon pulls it; it gets this CLI's credentials for that registry, if any
        body["registry_auth"] = auth_for(cli, model)
    event = follow(lambda on_event: cli.client.up(body, on_event))
    dep = event["deployment"]
    render.out(f"{dep['name']} is ready: {dep['endpoint']}")
    for warning in dep.get("warnings") or ():
        render.out(f"WARNING: {warning}", err=True)
    if event.get("api_key"):
        render.out(f"API key (shown once, store it now): {event['api_key']}")


def local_reference(model: str) -> str:
    """A reference naming a file or folder that exists here, made absolute: tursid resolves paths against its
    own working directory, not this shell's. Aliases win over a folder of the same name, as in tursid; anything
    else (a hub id, an artifact key) is sent as typed."""
    if model.strip().lower() in ALIASES:
        return model
    try:
        path = Path(model).expanduser()
        return os.path.abspath(path) if path.exists() else model  # lexical: a link keeps its own name
    except (RuntimeError, ValueError, OSError):  # an unknown ~user, a name too long: not a local path
        return model


COMMANDS = [up_cmd]
