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
from tursi.core.errors import InvalidSpec
from tursi.core.refs import ALIASES
from tursi.registry.reference import is_reference

Final = TypeVar("Final")


@click.command("up")
@spec_options()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what up would do here and why (plan, reasons, cache, expected size and memory); convert nothing.",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How --dry-run prints its plan.",
)
@pass_cli
def up_cmd(cli: CliContext, dry_run: bool, output: str, **params: Any) -> None:
    """Deploy MODEL: an alias (minilm, smollm2), a Hugging Face folder, a .gguf file, a hub id,
    a .tursi bundle or the key of a built artifact (see `tursi images`)."""
    body = request_body(params)
    body["model"] = model = local_reference(body["model"])
    if dry_run:
        preview(cli, body, output)
        return
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


def preview(cli: CliContext, body: dict[str, Any], output: str) -> None:
    """`up --dry-run`: tursid's plan for ``body``, printed; nothing is converted, loaded or started."""
    if body["model"].endswith(".tursi") and os.path.isfile(body["model"]):
        raise InvalidSpec(
            "a dry run does not load bundles", hint=f"tursi load {body['model']}, then tursi up KEY --dry-run"
        )
    plan = cli.client.plan(body)
    if output == "json":
        render.as_json(plan)
        return
    for line in plan_lines(plan):
        render.out(line)


def plan_lines(p: dict[str, Any]) -> list[str]:
    """The dry run's answer, readably: what, where, how, how big, how good, and every reason."""
    plan, est, hw = p["plan"], p["estimate"], p["hardware"]
    key = str(p.get("artifact_key"))
    if p["built"]:
        artifact = f"built artifact {key[:12]}, used as is (no conversion)"
    elif p["cached"]:
        artifact = f"cached artifact {key[:12]}: this plan was converted before (no conversion)"
    else:
        artifact = f"not cached: up would convert it ({plan.get('converter', plan['format'])})"
    lines = [
        f"dry run: tursi up {p['model']} (nothing converted, recorded or started)",
        f"deployment:  {p['name']} on http://{p['host']}:{p['port']}/v1",
        f"artifact:    {artifact}",
        f"format:      {plan['format']} on {plan['runtime']} ({plan['task']})",
        f"scheme:      {plan['quantization']}",
        f"threads:     {p['threads']}",
        f"hardware:    {hw['name']}: {hw['arch']}, {hw['physical_cores']} cores, "
        f"{render.human_size(hw['mem_total_bytes'])}, {', '.join(hw['features']) or 'no SIMD detected'}",
        f"size:        {_approx(est['artifact_bytes'])} ({est['basis']})",
        f"memory:      {_approx(est['memory_bytes'])}{_parts(est)} of tursid's "
        f"{render.human_size(est['memory_budget_bytes'])} budget"
        + ("" if est["fits_budget"] is not False else ": more than the whole budget, up would be refused"),
        f"quality:     {_floor(p['quality_floor'])}",
        "reasons:",
    ]
    return lines + [f"  {k}: {v}" for k, v in plan.get("reasons", {}).items()]


def _approx(n: int | None) -> str:
    return "unknown" if n is None else f"~{render.human_size(n)}"


def _parts(est: dict[str, Any]) -> str:
    """What the memory estimate is made of, when it was estimated from the source."""
    if est.get("overhead_bytes") is None:
        return ""
    kv = f" + KV cache {render.human_size(est['kv_cache_bytes'])}" if est.get("kv_cache_bytes") is not None else ""
    return f" (weights{kv} + runtime {render.human_size(est['overhead_bytes'])})"


def _floor(q: dict[str, Any]) -> str:
    if q.get("min_quality") is None:
        return str(q.get("note") or "no quality check")
    return f"{q['metric']} >= {q['min_quality']} vs fp32, else a safer scheme"


COMMANDS = [up_cmd]
