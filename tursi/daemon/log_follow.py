"""`logs --follow`: new bytes of a deployment's log as they are written, until the deployment stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from tursi.daemon.state import StateStore

POLL_S = 0.25


async def follow(
    store: StateStore, name: str, path: Path, send: Callable[[bytes], Awaitable[bool]], poll_s: float = POLL_S
) -> None:
    """Send what is appended to ``path`` from now on. Ends when ``send`` says the reader went away (False), or
    when the deployment is gone or no longer starting/running and everything it wrote was sent. A rotation
    (copytruncate) starts over at the top of the fresh file."""
    offset = path.stat().st_size if path.exists() else 0
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < offset:  # rotated (copytruncate): start over at the top of the fresh file
            offset = 0
        if size > offset:
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read(size - offset)
            offset = size
            if not await send(chunk):
                return
        dep = store.get_deployment(name)
        if dep is None or dep.status not in ("starting", "running"):
            if size == offset:
                return
        await asyncio.sleep(poll_s)
