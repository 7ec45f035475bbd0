"""Progress of the daemon's streamed operations (`up`, `build`, `pull`) on the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tursi.cli import render
from tursi.client.types import OnEvent, ProgressEvent

Final = TypeVar("Final")


def follow(operation: Callable[[OnEvent], Final]) -> Final:
    """Run a streamed operation (``up``, ``build``) showing its progress; returns its final event. What the
    operation raises (the daemon's streamed error, a stream cut short) passes through once progress shows failed."""
    progress = render.Progress()
    ok = False
    try:
        final = operation(lambda event: _show(progress, event))
        ok = True
        return final
    finally:
        progress.close(ok=ok)


def _show(progress: render.Progress, event: ProgressEvent) -> None:
    kind = event.get("event")
    if kind == "stage":
        progress.stage(f"[{event['step']}/{event['steps']}] {event['message']}")
    elif kind in ("status", "cached"):
        progress.stage(event["message"])
    elif kind == "bytes":  # a registry pull: one stage, its bytes as the detail (a plain line when it ends)
        if progress.current != render.clean(event["message"]):
            progress.stage(event["message"])
        done, total = event.get("done", 0), event.get("total", 0)
        progress.note(f"{render.human_size(done)} / {render.human_size(total)}", plain=done >= total)
