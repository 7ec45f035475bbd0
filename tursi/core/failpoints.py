"""Named failpoints for fault-injection tests, off unless TURSI_FAILPOINTS is on (and TURSI_HOME is set).

When enabled, ``hit(name)`` reads ``$TURSI_HOME/failpoints.json`` (``{"name": "kill" | "raise"}``) at every call,
so a test can arm and disarm points without restarting anything. ``kill`` is SIGKILL to the calling process
(tursid or the converter child), the way power loss or the OOM killer would end it. The points sit at the
durability boundaries: see ``NAMES``.
"""

from __future__ import annotations

import json
import os
import signal

from tursi.core.settings import failpoints_file

NAMES = (
    "convert.after_export",  # converter child: fp32 export done, nothing quantized yet (mid-conversion)
    "convert.before_publish",  # converter child: artifact and manifest written in staging, not renamed
    "load.before_publish",  # tursid: bundle unpacked and checked in staging, not renamed
    "up.before_commit",  # tursid: artifact ready, deployment row not yet written
    "up.after_commit",  # tursid: deployment row written, worker not started
)


def hit(name: str) -> None:
    path = failpoints_file(os.environ)  # read at every call: nothing to set up, nothing read at import
    if path is None:
        return
    try:
        armed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    action = armed.get(name) if isinstance(armed, dict) else None
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise OSError(f"failpoint {name}")
