"""Running the external tools a pack is built with (pip, the cross-build script), their failures as one error."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tursi.core.errors import PackBuildFailed

OnLine = Callable[[str], None]


def run_tool(argv: list[str], what: str, *, on_line: OnLine | None = None, cwd: Path | None = None) -> str:
    """Run ``argv``; return its stdout. Each stderr line goes to ``on_line``; a failure raises PackBuildFailed
    with the last lines of the tool's output."""
    tail: deque[str] = deque(maxlen=15)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
        )
    except OSError as e:
        raise PackBuildFailed(f"{what}: cannot run {argv[0]}: {e.strerror}") from None
    out_lines: list[str] = []
    reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    for line in proc.stderr or ():
        tail.append(line.rstrip("\n"))
        if on_line is not None:
            on_line(line.rstrip("\n"))
    rc = proc.wait()
    reader.join()
    if rc != 0:
        tail.extend(line.rstrip("\n") for line in out_lines[-10:])
        raise PackBuildFailed(
            f"{what} failed (exit {rc})",
            hint="packs need network access to the package index, and Debian's cross-compiler "
            "(sudo platform/install-arm-tools.sh); the tool's last lines are above",
            log_tail=[line[:300] for line in tail],
        )
    return "".join(out_lines)
