"""Runs a conversion in a child process (heavy imports live only there) and relays its events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tursi.daemon.supervisor import tail_lines
from tursi.errors import ConversionFailed

log = logging.getLogger(__name__)


async def run_conversion(spec: dict[str, Any], log_file: Path) -> AsyncIterator[dict[str, Any]]:
    """Yield the child's stage events; the last one is ``done``. Raises ConversionFailed."""
    with log_file.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "converters",
            json.dumps(spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1"},
        )
    failure: dict[str, Any] | None = None
    done = False
    finished = False
    try:
        if proc.stdout is None:
            raise ConversionFailed("converter started without a pipe")
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "error":
                failure = event
            else:
                done = done or event.get("event") == "done"
                yield event
        finished = True
    finally:
        if not finished and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        code = await proc.wait()
    if failure or code != 0 or not done:
        detail = failure["detail"] if failure else f"converter exited with status {code}"
        raise ConversionFailed(detail, log_tail=tail_lines(log_file, 10), hint=f"see {log_file}")
