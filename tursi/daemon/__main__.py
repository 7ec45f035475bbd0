"""``tursid``: the Tursi daemon. ``python -m tursi.daemon`` is the same."""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from tursi.core.errors import TursiError


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tursi.daemon.memory import cap_malloc_arenas, import_server_lean

    cap_malloc_arenas()  # before any thread starts
    from tursi.core.addresses import gateway_enabled, parse_listen
    from tursi.core.settings import Settings

    parser = argparse.ArgumentParser(prog="tursid", description="The Tursi daemon.")
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="also serve the control API over TCP: TLS and a token by default"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (default: a self-signed one made once)")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP over TCP (loopback addresses only)")
    parser.add_argument("--no-auth", action="store_true", help="no token over TCP (loopback addresses only)")
    parser.add_argument(
        "--gateway",
        metavar="HOST:PORT|off",
        help="where to serve the gateway, one port for every deployment (default: TURSI_GATEWAY, 127.0.0.1:8585)",
    )
    parser.add_argument(
        "--ui",
        metavar="HOST:PORT|off",
        help="where to serve the dashboard, loopback only (default: TURSI_UI, 127.0.0.1:8586)",
    )
    parser.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="memory loaded models may use, like 3G (default: TURSI_MEMORY_BUDGET, else physical memory minus 10 %%)",
    )
    parser.add_argument("--rotate-token", action="store_true", help="make a new control token, print it, exit")
    parser.add_argument(
        "--init", action="store_true", help="with --listen: make the token and TLS certificate, print them, exit"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(os.environ)
    except TursiError as e:  # a variable with a value it cannot use: TURSI_STOP_GRACE=soon
        sys.stderr.write(f"tursid: {e.detail}\n")
        return e.exit_code
    try:
        settings = _overridden(settings, args)
    except ValueError as e:
        sys.stderr.write(f"tursid: {e}\n")
        return 64
    if not gateway_enabled(settings.gateway):
        import_server_lean()  # no request passes through tursid: the pure-Python parsers save about 2 MB
    from tursi.daemon.app import configure_logging, serve
    from tursi.daemon.remote import ensure_token

    configure_logging(settings.debug)
    settings.ensure_dirs()
    try:
        listen = parse_listen(args.listen) if args.listen else None
        tls = _tls(args, settings, listen)
    except ValueError as e:
        sys.stderr.write(f"tursid: {e}\n")
        return 64
    # a local daemon (Unix socket only) needs no token; the first TCP start makes one
    needs_token = (listen is not None and not args.no_auth) or args.rotate_token
    token = ensure_token(settings.home, rotate=args.rotate_token) if needs_token else None
    if token:  # shown once; only its sha256 is kept
        sys.stderr.write(f"tursid: control token (shown once, use as TURSI_TOKEN): {token}\n")
    if args.rotate_token:
        return 0
    if args.init:
        if listen is None:
            sys.stderr.write("tursid: --init goes with --listen HOST:PORT\n")
            return 64
        if not token and not args.no_auth:
            sys.stderr.write("tursid: a control token exists already (--rotate-token makes a new one)\n")
        return 0
    try:
        return serve(settings, listen, tls=tls, require_token=not args.no_auth)
    except TursiError as e:
        sys.stderr.write(f"tursid: {e.detail}\n")
        return e.exit_code


def _overridden(settings: Any, args: Any) -> Any:
    """``settings`` with --gateway, --ui and --memory-budget applied, all checked; ValueError names a bad one."""
    from tursi.core.addresses import gateway_enabled, parse_listen
    from tursi.core.durations import keep_alive_seconds
    from tursi.core.sizes import parse_size
    from tursi.http.guards import is_loopback_bind

    if args.gateway is not None:
        settings = dataclasses.replace(settings, gateway=args.gateway)
    if args.ui is not None:
        settings = dataclasses.replace(settings, ui=args.ui)
    if args.memory_budget is not None:
        settings = dataclasses.replace(settings, memory_budget=args.memory_budget)
    if settings.memory_budget.strip():
        parse_size(settings.memory_budget)
    try:
        keep_alive_seconds(settings.keep_alive)
    except ValueError as e:
        raise ValueError(f"TURSI_KEEP_ALIVE: {e}") from None
    if gateway_enabled(settings.gateway):
        parse_listen(settings.gateway, "--gateway (or TURSI_GATEWAY)")
    if gateway_enabled(settings.ui) and not is_loopback_bind(parse_listen(settings.ui, "--ui (or TURSI_UI)")[0]):
        raise ValueError(f"--ui (or TURSI_UI) {settings.ui!r}: the dashboard serves loopback only (127.0.0.1:PORT)")
    return settings


def _tls(args: Any, settings: Any, listen: tuple[str, int] | None) -> Any:
    """The server SSL context for --listen, or None; ValueError for a refused combination."""
    from tursi.daemon import tls
    from tursi.http.guards import is_loopback_bind as is_loopback

    if listen is None:
        if args.no_tls or args.no_auth or args.tls_cert or args.tls_key:
            raise ValueError("--no-tls, --no-auth and --tls-* apply to --listen")
        return None
    loopback = is_loopback(listen[0])
    if args.no_auth and not loopback:
        raise ValueError(f"refusing to listen on {listen[0]} without a token: --no-auth is for loopback only")
    if args.no_tls:
        if not loopback:
            raise ValueError(f"refusing plain HTTP on {listen[0]}: tokens would cross the network in clear text")
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_cert:
        cert, key = Path(args.tls_cert), Path(args.tls_key)
    else:
        cert, key, made = tls.ensure_self_signed(settings.home / "tls", listen[0])
        if made:
            sys.stderr.write(f"tursid: made a self-signed TLS certificate: {cert}\n")
    try:
        context = tls.server_context(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot use the TLS certificate {cert}: {e}") from None
    sys.stderr.write(f"tursid: TLS certificate {tls.fingerprint(cert)} (clients pin it as TURSI_TLS_FINGERPRINT)\n")
    return context


if __name__ == "__main__":
    raise SystemExit(main())
