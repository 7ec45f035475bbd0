"""`tursi login`, `logout`, `tag` and `pull`: models on OCI registries, the way Docker moves images.
(`tursi push REF` is in bundles.py, beside `tursi push FILE`.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from tursi.cli import render
from tursi.cli.context import CliContext, pass_cli
from tursi.cli.follow import follow
from tursi.core.errors import InvalidSpec
from tursi.registry.client import RegistryClient
from tursi.registry.credentials import CredentialStore, RegistryAuth
from tursi.registry.reference import parse_reference


def credentials(cli: CliContext) -> CredentialStore:
    return CredentialStore(cli.settings.registries_path, cli.settings.docker_config_path)


def auth_for(cli: CliContext, ref: str) -> dict[str, Any] | None:
    """The CLI's credentials for ``ref``'s registry, sent with the request (the daemon keeps none of them)."""
    found = credentials(cli).get(parse_reference(ref).registry).as_json()
    return found or None


def read_ca(path: str) -> str:
    """The certificate(s) in ``path`` as PEM text: what is kept, and what a daemon is sent (not the path, which
    means nothing on another machine)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSpec(f"cannot read the CA file {path}: {e}", param="ca_file") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InvalidSpec(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", param="ca_file")
    return text


@click.command("login")
@click.argument("registry")
@click.option("-u", "--username", prompt=True, help="User name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Trust this CA (or certificate).")
@click.option("--plain-http", is_flag=True, help="A registry on loopback without TLS.")
@click.option("--daemon", "on_daemon", is_flag=True, help="Store them on the daemon, which pulls for itself.")
@pass_cli
def login_cmd(
    cli: CliContext, registry: str, username: str, password_stdin: bool, ca_file: str | None, plain_http: bool,
    on_daemon: bool,
) -> None:  # fmt: skip
    """Check credentials for REGISTRY (host[:port]) and keep them (0600), for push and pull."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt("Password", hide_input=True)
    auth = RegistryAuth(username, password, read_ca(ca_file) if ca_file else None, plain_http)
    if on_daemon:
        cli.client.registry_login(registry, auth.as_json())
        render.out(f"Login succeeded: the daemon at {cli.client.url} keeps credentials for {registry}")
        return
    RegistryClient(registry, username, password, auth.ca_pem, plain_http).ping()
    credentials(cli).save(registry, auth)
    render.out(f"Login succeeded: credentials for {registry} kept in {cli.settings.registries_path}")


@click.command("logout")
@click.argument("registry")
@click.option("--daemon", "on_daemon", is_flag=True, help="Forget the daemon's credentials instead.")
@pass_cli
def logout_cmd(cli: CliContext, registry: str, on_daemon: bool) -> None:
    """Forget the credentials kept for REGISTRY."""
    removed = cli.client.registry_logout(registry)["removed"] if on_daemon else credentials(cli).remove(registry)
    if not removed:
        raise InvalidSpec(f"no credentials kept for {registry}", param="registry")
    render.out(f"Removed credentials for {registry}")


@click.command("tag")
@click.argument("source")
@click.argument("ref")
@pass_cli
def tag_cmd(cli: CliContext, source: str, ref: str) -> None:
    """Name SOURCE (a deployment, an artifact key or a tag) REF (host[:port]/repository:tag), for `tursi push`."""
    answer = cli.client.registry_tag(source, ref)
    render.out(f"{answer['ref']} -> artifact {answer['key'][:12]}")


@click.command("pull")
@click.argument("ref")
@pass_cli
def pull_cmd(cli: CliContext, ref: str) -> None:
    """Fetch REF into the daemon's artifact cache (every blob checked against its digest as it streams)."""
    answer = follow(lambda on_event: cli.client.registry_pull(ref, auth_for(cli, ref), on_event))
    verb = f"pulled {render.human_size(answer['bytes'])}" if answer["downloaded"] else "already present"
    if answer.get("key") is None:  # another tool's model-spec artifact
        render.out(f"{answer['ref']}: {verb}, a GGUF pushed by another tool; deploy it with: tursi up {answer['ref']}")
        return
    render.out(f"{answer['ref']}: {verb}, artifact {answer['key'][:12]} (tursi up {answer['key'][:12]})")


def push_reference(cli: CliContext, ref: str) -> None:
    answer = cli.client.registry_push(ref, auth_for(cli, ref))
    render.out(
        f"{answer['reference']}: {answer['digest']} ({answer['blobs_uploaded']} blobs, "
        f"{render.human_size(answer['bytes_uploaded'])} uploaded; {answer['blobs_skipped']} already there)"
    )


COMMANDS = [login_cmd, logout_cmd, tag_cmd, pull_cmd]
