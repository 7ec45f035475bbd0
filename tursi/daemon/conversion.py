"""Runs a conversion in a child process (heavy imports live only there) and relays its events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tursi.core.errors import ConversionFailed
from tursi.daemon.logfiles import tail_lines
from tursi.daemon.supervisor import child_env

log = logging.getLogger(__name__)


def converter_env(env: dict[str, str]) -> dict[str, str]:
    """tursid resolved and downloaded the model already: the converter works from the cache (HF_HUB_OFFLINE=1)
    unless tursid's own environment says otherwise (child_env passes HF_* through)."""
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


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
            env=converter_env(child_env(os.environ, PYTHONUNBUFFERED="1")),
        )
    failure: dict[str, Any] | None = None
    staging: Path | None = None
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
            elif event.get("event") == "staging":
                staging = Path(str(event.get("path")))
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
        _remove_staging(staging, Path(spec["artifacts_dir"]))
        if failure:
            detail = failure["detail"]
        elif code == -signal.SIGKILL:
            detail = "the converter was killed (SIGKILL: often the kernel's out-of-memory killer)"
        else:
            detail = f"converter exited with status {code}"
        raise ConversionFailed(detail, log_tail=tail_lines(log_file, 10), hint=f"see {log_file}")


def _remove_staging(staging: Path | None, artifacts_dir: Path) -> None:
    """A converter that died leaves its half-made staging directory: remove it now, not at the next start."""
    if staging is not None and staging.name.startswith(".tmp-") and staging.parent == artifacts_dir:
        shutil.rmtree(staging, ignore_errors=True)
