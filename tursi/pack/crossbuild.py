"""llama-cpp-python cross-compiled for a pack target by platform/cross-build-llama-cpp.sh (cached by flags)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from tursi.core.errors import PackBuildFailed
from tursi.pack.targets import PackTarget
from tursi.pack.tools import run_tool
from tursi.pack.wheels import source_root

_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")


def llama_wheel(
    target: PackTarget, *, python: str = sys.executable, on_step: Callable[[int, int], None] | None = None
) -> Path:
    """The cached wheel for ``target``'s ARM architecture, compiled first when there is none (minutes)."""
    script = source_root() / "platform" / "cross-build-llama-cpp.sh"

    def on_line(line: str) -> None:
        m = _STEP.match(line)
        if m and on_step is not None:
            on_step(int(m.group(1)), int(m.group(2)))

    out = run_tool(
        ["bash", str(script), target.arm_arch, python],
        f"cross-compiling llama-cpp-python for {target.name} ({target.arm_arch})",
        on_line=on_line,
    )
    lines = out.strip().splitlines()
    wheel = Path(lines[-1]) if lines else None
    if wheel is None or not wheel.is_file():
        raise PackBuildFailed(f"the cross build printed no wheel path ({out.strip()[-200:]!r})")
    return wheel
