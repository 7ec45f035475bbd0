"""``tursid``: the Tursi daemon. ``python -m tursi.daemon`` is the same."""

from __future__ import annotations

import os
import sys

from tursi.errors import TursiError


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tursi.daemon.app import configure_logging, serve
    from tursi.daemon.remote import ensure_token, parse_listen
    from tursi.settings import Settings

    parser = argparse.ArgumentParser(prog="tursid", description="The Tursi daemon.")
    parser.add_argument("--listen", metavar="HOST:PORT", help="also serve the control API over TCP (token required)")
    parser.add_argument("--rotate-token", action="store_true", help="make a new control token, print it, exit")
    args = parser.parse_args(argv)
    settings = Settings.load(os.environ)
    configure_logging(settings.debug)
    settings.ensure_dirs()
    # a local daemon (Unix socket only) needs no token; the first TCP start makes one
    token = ensure_token(settings.home, rotate=args.rotate_token) if args.listen or args.rotate_token else None
    if token:  # shown once; only its sha256 is kept
        sys.stderr.write(f"tursid: control token (shown once, use as TURSI_TOKEN): {token}\n")
    if args.rotate_token:
        return 0
    try:
        listen = parse_listen(args.listen) if args.listen else None
    except ValueError as e:
        sys.stderr.write(f"tursid: {e}\n")
        return 64
    try:
        return serve(settings, listen)
    except TursiError as e:
        sys.stderr.write(f"tursid: {e.detail}\n")
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
