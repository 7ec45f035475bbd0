"""Worker entry: ``python -m tursi.worker --settings=JSON`` (``tursi.core.spec.WorkerSettings``, from tursid)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path

from tursi.core.errors import InvalidSpec
from tursi.core.settings import HttpSettings
from tursi.core.worker_settings import WorkerSettings
from tursi.http.connections import ConnectionLimits, serve
from tursi.http.guards import is_loopback_bind
from tursi.worker.app import build_app
from tursi.worker.state import WorkerState


def build_parser() -> argparse.ArgumentParser:
    """tursid passes its settings as one ``--settings=JSON`` (supervisor.worker_command): nothing in them can pass
    for an option."""
    parser = argparse.ArgumentParser(prog="tursi-worker", allow_abbrev=False)
    parser.add_argument("--settings", required=True, metavar="JSON", help="WorkerSettings as JSON")
    return parser


def parse_settings(argv: list[str] | None = None) -> WorkerSettings:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return WorkerSettings.from_json(args.settings)
    except InvalidSpec as e:
        parser.error(e.detail)  # exits 2, like any other bad argument


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = json.loads((Path(settings.artifact) / "manifest.json").read_text(encoding="utf-8"))
    state = WorkerState.from_settings(settings, manifest)
    host, port = settings.host, settings.port
    logging.getLogger(__name__).info(
        "worker pid=%d name=%s serving on http://%s:%d", os.getpid(), state.name, host, port
    )
    http = HttpSettings.load(os.environ)  # tursid checked these values before it started this worker
    app = build_app(state, loopback_only=is_loopback_bind(host), http=http)
    sock = socket.socket(fileno=settings.listen_fd) if settings.listen_fd is not None else None
    asyncio.run(serve(app, host, port, ConnectionLimits.from_settings(http), shutdown_s=5.0, sock=sock))
    close = getattr(state.runtime, "close", None)
    if callable(close):  # the LLM engine's thread finishes its step and frees the context before exit
        close()
    return 0 if state.load_error is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
