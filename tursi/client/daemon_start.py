"""Start a tursid process and wait until it answers ``/health``: how the CLI autostarts one, and how the tests and
the benchmarks run theirs. Standard library only (the CLI imports this)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tursi.core.errors import DaemonUnavailable

if TYPE_CHECKING:
    from tursi.client.control import ControlClient


def daemon_command() -> list[str]:
    """``python -m tursi.daemon`` with this interpreter."""
    return [sys.executable, "-m", "tursi.daemon"]


@dataclass(frozen=True)
class DaemonHandle:
    """A started tursid: its process, the address it was asked to answer on and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_healthy(self, client: ControlClient, timeout_s: float, fail_on_exit: bool = True) -> None:
        """Poll ``client.healthy()`` until it answers; DaemonUnavailable after ``timeout_s``, or as soon as the
        process exits when ``fail_on_exit`` (without it, another tursid may still answer: one that won the lock)."""
        deadline = time.monotonic() + timeout_s
        while True:
            exited = fail_on_exit and not self.running()
            if not exited and client.healthy():
                return
            if exited or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        hint = f"see {self.log_path}" if self.log_path is not None else None
        if exited:
            raise DaemonUnavailable(
                f"tursid exited with status {self.process.returncode} before it answered on {self.url}", hint=hint
            )
        raise DaemonUnavailable(f"started tursid but it did not answer on {self.url}", hint=hint)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (unless it has exited already) and its exit status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL: no clean shutdown (what a crash or an OOM kill leaves behind)."""
        self.process.kill()
        self.process.wait(timeout=timeout_s)


def spawn_tursid(
    url: str,
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    command: Sequence[str] | None = None,
    new_session: bool = True,
) -> DaemonHandle:
    """Start tursid (``command``, by default ``python -m tursi.daemon``) with exactly ``env``; its output is appended
    to ``log_path`` (O_APPEND: tursid rotates its log by copy and truncate), or discarded. ``new_session`` detaches
    it from the caller's terminal and signals. Returns at once; see ``start_tursid`` to wait for it."""
    argv, environ = list(command or daemon_command()), dict(env)
    if log_path is None:
        process = _popen(argv, environ, subprocess.DEVNULL, new_session)
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            process = _popen(argv, environ, out, new_session)
    return DaemonHandle(process, url, log_path)


def _popen(argv: list[str], env: dict[str, str], out: IO[bytes] | int, new_session: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=new_session, close_fds=True
    )


def start_tursid(
    client: ControlClient,
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    command: Sequence[str] | None = None,
    timeout_s: float = 20.0,
    fail_on_exit: bool = True,
    new_session: bool = True,
) -> DaemonHandle:
    """``spawn_tursid`` then ``wait_healthy``: a tursid that answers ``client`` (DaemonUnavailable if it does not)."""
    handle = spawn_tursid(client.url, env, log_path=log_path, command=command, new_session=new_session)
    handle.wait_healthy(client, timeout_s, fail_on_exit)
    return handle
