"""Worker entry: ``python -m tursi.worker --name=N --artifact=DIR --host=H --port=P``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from tursi.core.access import parse_rate_limit
from tursi.http.connections import ConnectionLimits, serve
from tursi.http.guards import is_loopback_bind
from tursi.http.ratelimit import RateLimiter
from tursi.worker.app import build_app
from tursi.worker.state import WorkerState


def build_parser() -> argparse.ArgumentParser:
    """tursid passes every value as ``--opt=value`` (supervisor.worker_command), so none can pass for an option."""
    parser = argparse.ArgumentParser(prog="tursi-worker", allow_abbrev=False)
    parser.add_argument("--name", required=True)
    parser.add_argument("--model-ref", required=True)
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--ctx-size", type=int, default=0)
    parser.add_argument("--max-queue", type=int, default=32)
    parser.add_argument("--rate-limit", default="")
    parser.add_argument("--api-key-sha256", default="", help="sha256 of the API key inference routes require")
    parser.add_argument("--max-batch", type=int, default=32, help="encoders: texts per coalesced session run")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="encoders: straggler window")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = json.loads((args.artifact / "manifest.json").read_text(encoding="utf-8"))
    state = WorkerState(
        name=args.name,
        model_ref=args.model_ref,
        artifact=args.artifact,
        manifest=manifest,
        threads=args.threads,
        ctx_size=args.ctx_size,
        max_queue=args.max_queue,
        limiter=RateLimiter(parse_rate_limit(args.rate_limit)) if args.rate_limit else None,
        api_key_sha256=args.api_key_sha256 or None,
        max_batch=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1000.0,
    )
    logging.getLogger(__name__).info(
        "worker pid=%d name=%s serving on http://%s:%d", os.getpid(), args.name, args.host, args.port
    )
    app = build_app(state, loopback_only=is_loopback_bind(args.host))
    asyncio.run(serve(app, args.host, args.port, ConnectionLimits.from_env(), shutdown_s=5.0))
    return 0 if state.load_error is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
