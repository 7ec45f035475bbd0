"""Starts, watches and stops worker processes; reconciles the database with reality at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from tursi.core.errors import InvalidSpec, WorkerFailed
from tursi.core.restart import Backoff, RestartPolicy
from tursi.core.settings import cli_only
from tursi.core.spec import DeploymentSpec
from tursi.core.worker_settings import WorkerSettings
from tursi.daemon.health import probe_loop
from tursi.daemon.logfiles import log_path, tail_lines
from tursi.daemon.state import ACTIVE, Deployment, StateStore

log = logging.getLogger(__name__)


@dataclass
class Handle:
    pid: int
    proc: asyncio.subprocess.Process | None  # None when adopted after a tursid restart
    watcher: asyncio.Task[None] | None = None
    health: asyncio.Task[None] | None = None
    stopping: bool = False


# What a worker or converter may see of tursid's environment (tursid may hold a control token, a started-by-the-CLI
# tursid the CLI's whole environment): settings they read, paths, locale and thread knobs; nothing that names a secret.
CHILD_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV"}
    | {"LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"}
)
CHILD_ENV_PREFIXES = (
    ("LC_", "PYTHON", "XDG_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_", "OPENBLAS_", "GGML_", "ORT_")
    + ("TURSI_",)  # the server settings (timeouts, connection caps, failpoints) workers read
    + ("QEMU_",)  # under qemu-user emulation (QEMU_CPU), workers must run on the same emulated core as tursid
)
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")
CLIENT_ONLY = cli_only()  # how a CLI finds a daemon (TURSI_HOST, TURSI_TLS_*) and its token


def child_env(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment for a worker or converter: what they need of ``environ``, then ``extra``."""
    env = {}
    for name, value in environ.items():
        upper = name.upper()
        if upper in CLIENT_ONLY or any(word in upper for word in SECRET_WORDS):
            continue
        if upper in CHILD_ENV_NAMES or upper.startswith(CHILD_ENV_PREFIXES):
            env[name] = value
    return {**env, **extra}


def worker_command(
    dep: Deployment, python: str = sys.executable, listen_fd: int | None = None, gateway_sha256: str | None = None
) -> list[str]:
    """The worker's command line: its settings (the deployment's spec as stored, where to serve it) as one
    ``--settings=JSON`` argument, parsed back by the worker with the same spec. Being one ``--opt=value``, nothing
    in it (a model reference ``--help``) can pass for an option; the API key travels only as its sha256."""
    settings = WorkerSettings(
        dep.name,
        dep.model,
        dep.artifact_path,
        dep.host,
        dep.port,
        DeploymentSpec.from_stored(dep.options),
        dep.options.get("api_key_sha256") or None,
        listen_fd,
        gateway_sha256,
    )
    return [python, "-m", "tursi.worker", f"--settings={settings.to_json()}"]


def worker_artifact(cmdline: list[str]) -> str | None:
    """The artifact a worker's command line serves: from its settings, or the ``--artifact=`` of a worker that
    an older tursid started."""
    for arg in cmdline:
        if arg.startswith("--artifact="):
            return arg.removeprefix("--artifact=")
        if arg.startswith("--settings="):
            try:
                return WorkerSettings.from_json(arg.removeprefix("--settings=")).artifact
            except InvalidSpec:
                return None
    return None


def exit_status(returncode: int | None) -> int | None:
    """Docker's convention: a signal N reads as 128 + N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    def __init__(self, store: StateStore, logs_dir: Path, *, grace_s: float = 10.0) -> None:
        self.store = store
        self.logs_dir = logs_dir
        self.grace_s = grace_s
        self.handles: dict[str, Handle] = {}
        self.backoffs: dict[str, Backoff] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.gateway_sha256: str | None = None  # handed to workers: requests the gateway passes on carry its secret

    def lifecycle(self, name: str, kind: str, detail: str = "") -> None:
        """An event in the database and a line in the deployment's log."""
        self.store.add_event(name, kind, detail)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with log_path(self.logs_dir, name).open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} [tursid] {kind}{': ' + detail if detail else ''}\n")

    async def start(self, dep: Deployment, listener: socket.socket | None = None) -> None:
        """Starts the worker on a socket tursid binds (or ``listener``, the one it held while the deployment was
        idle) and hands over: connections that arrive while the worker starts wait in the socket's backlog."""
        if listener is None:
            try:
                listener = bind_listener(dep.host, dep.port)
            except OSError as e:
                self.store.update_deployment(dep.name, status="failed", reason=f"cannot listen: {e.strerror}")
                self.lifecycle(dep.name, "failed", f"cannot listen on {dep.host}:{dep.port}: {e.strerror}")
                raise WorkerFailed(
                    f"deployment {dep.name}: cannot listen on {dep.host}:{dep.port}: {e.strerror}"
                ) from None
        logfile = log_path(self.logs_dir, dep.name).open("ab")
        cmd = worker_command(dep, listen_fd=listener.fileno(), gateway_sha256=self.gateway_sha256)
        env = child_env(os.environ, PYTHONUNBUFFERED="1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                env=env,
                start_new_session=True,
                pass_fds=(listener.fileno(),),
            )
        finally:
            logfile.close()
            listener.close()  # the worker has its own copy
        started = _create_time(proc.pid)
        self.store.update_deployment(
            dep.name,
            status="starting",
            pid=proc.pid,
            pid_started_at=started,
            started_at=time.time(),
            exit_code=None,
            reason=None,
            finished_at=None,
        )
        self.lifecycle(dep.name, "started", f"pid={proc.pid} endpoint={dep.endpoint}")
        handle = Handle(proc.pid, proc)
        handle.watcher = asyncio.get_running_loop().create_task(self._watch_child(dep.name, handle))
        self.handles[dep.name] = handle

    async def _poll_ready(self, dep: Deployment, timeout_s: float) -> bool:
        url = f"http://{'127.0.0.1' if dep.host in ('0.0.0.0', '') else dep.host}:{dep.port}/ready"
        deadline = time.monotonic() + timeout_s
        handle = self.handles.get(dep.name)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if handle is None or (handle.watcher is not None and handle.watcher.done()):
                    return False
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            self.store.update_deployment(dep.name, status="running")
                            self.lifecycle(dep.name, "ready", url)
                            self._start_health(dep, url)
                            return True
                await asyncio.sleep(0.2)
        return False

    async def wait_ready(self, dep: Deployment, timeout_s: float) -> None:
        started = time.monotonic()
        if await self._poll_ready(dep, timeout_s):
            return
        timed_out = time.monotonic() - started >= timeout_s
        await self.stop(dep.name, reason="failed to become ready", status="failed")
        last = tail_lines(log_path(self.logs_dir, dep.name), 15)
        why = f"not ready after {timeout_s:.0f}s" if timed_out else "the worker exited before it was ready"
        raise WorkerFailed(f"deployment {dep.name}: {why}", log_tail=last, hint=f"tursi logs {dep.name}")

    async def _watch_child(self, name: str, handle: Handle) -> None:
        if handle.proc is None:
            return
        code = await handle.proc.wait()
        self._record_exit(name, handle, exit_status(code))

    async def _watch_adopted(self, name: str, handle: Handle) -> None:
        while _alive(handle.pid):
            await asyncio.sleep(0.5)
        self._record_exit(name, handle, None)

    def _record_exit(self, name: str, handle: Handle, code: int | None) -> None:
        if handle.health is not None:
            handle.health.cancel()
        if self.handles.get(name) is handle:
            del self.handles[name]
        dep = self.store.get_deployment(name)
        if handle.stopping or dep is None:
            return
        status = "exited" if dep.status == "running" else "failed"
        self.store.update_deployment(
            name, status=status, exit_code=code, finished_at=time.time(), pid=None, reason="worker exited"
        )
        self.lifecycle(name, "exited", f"code={code if code is not None else 'unknown'}")
        log.warning("worker exited name=%s code=%s", name, code)
        spec = DeploymentSpec.from_stored(dep.options)
        policy = spec.restart_policy()
        if dep.health == "unhealthy" and spec.restart_on_unhealthy:
            policy = RestartPolicy("always")
        self.store.update_deployment(name, health=None)
        if policy.should_restart(code, dep.restart_count):
            ran_for = time.time() - (dep.started_at or time.time())
            delay = self.backoffs.setdefault(name, Backoff()).next_delay(ran_for)
            self.schedule_restart(name, delay, f"policy {policy}, attempt {dep.restart_count + 1}")
        elif policy.mode != "no":
            self.store.update_deployment(name, status="failed")
            self.lifecycle(name, "gave up", f"policy {policy} after {dep.restart_count} restarts")

    def _start_health(self, dep: Deployment, url: str) -> None:
        handle = self.handles.get(dep.name)
        if handle is None:
            return
        check = DeploymentSpec.from_stored(dep.options).health_check()

        async def report(state: str) -> None:
            self.store.update_deployment(dep.name, health=state)
            self.lifecycle(dep.name, "health", state)
            if state == "unhealthy" and dep.options.get("restart_on_unhealthy") and not handle.stopping:
                self.lifecycle(dep.name, "killing", "unhealthy and --restart-on-unhealthy")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.pid, signal.SIGKILL)  # _record_exit restarts it (the policy is forced)

        started = dep.started_at or time.time()
        handle.health = asyncio.get_running_loop().create_task(probe_loop(url, check, started, report))

    def schedule_restart(self, name: str, delay_s: float, why: str) -> None:
        self.store.update_deployment(name, status="restarting")
        self.lifecycle(name, "restarting", f"in {delay_s:.1f}s ({why})")
        self.pending[name] = asyncio.get_running_loop().create_task(self._restart_later(name, delay_s))

    async def _restart_later(self, name: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.pending.pop(name, None)
        dep = self.store.get_deployment(name)
        if dep is None or dep.status != "restarting":
            return  # removed or stopped meanwhile: a manual down is never undone
        self.store.update_deployment(name, restart_count=dep.restart_count + 1)
        try:
            await self.start(dep)
        except WorkerFailed:
            return  # recorded as failed: its port is taken
        dep = self.store.get_deployment(name) or dep
        await self._poll_ready(dep, 120.0)  # if the worker dies instead, _record_exit decides what is next

    async def stop(self, name: str, *, reason: str = "stopped", status: str = "exited") -> None:
        """SIGTERM, wait the grace period, then SIGKILL. Records the final status; cancels a pending restart."""
        pending = self.pending.pop(name, None)
        if pending is not None:
            pending.cancel()
        handle = self.handles.get(name)
        code = None
        if handle is not None:
            handle.stopping = True
            if handle.health is not None:
                handle.health.cancel()
            code = await self._terminate(handle)
            self.handles.pop(name, None)
        if self.store.get_deployment(name) is not None:
            self.store.update_deployment(
                name, status=status, pid=None, finished_at=time.time(), reason=reason, exit_code=code
            )
            self.lifecycle(name, "stopped", reason)

    async def _terminate(self, handle: Handle) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and _alive(handle.pid, handle.proc):
            await asyncio.sleep(0.05)
        if _alive(handle.pid, handle.proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGKILL)
        if handle.proc is not None:
            return exit_status(await handle.proc.wait())
        while _alive(handle.pid):
            await asyncio.sleep(0.05)
        return None

    async def stop_all(self, reason: str) -> None:
        names = set(self.handles) | set(self.pending)
        await asyncio.gather(*(self.stop(name, reason=reason) for name in names))

    def reconcile(self, artifacts_dir: Path | None = None) -> None:
        """After a restart: adopt live workers we started, kill orphans, mark the rest exited, restart per policy."""
        self._reconcile_active()
        if artifacts_dir is not None:
            self._kill_orphans(artifacts_dir)
        for dep in self.store.list_deployments(all=True):
            if dep.status in ("exited", "failed") and dep.artifact_key and dep.name not in self.handles:
                if DeploymentSpec.from_stored(dep.options).restart_policy().restart_on_daemon_start(dep.reason):
                    self.schedule_restart(dep.name, 0.0, f"policy {dep.options.get('restart')} after tursid start")

    def _kill_orphans(self, artifacts_dir: Path) -> None:
        """Workers of this TURSI_HOME that no deployment owns (e.g. started just before a crash) are killed."""
        owned = {h.pid for h in self.handles.values()}
        marker = str(artifacts_dir)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = proc.info.get("cmdline") or []
            ours = "tursi.worker" in cmd and (worker_artifact(cmd) or "").startswith(marker)
            if ours and proc.pid not in owned:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                    log.warning("killed orphan worker pid=%d", proc.pid)
                    self.store.add_event(None, "orphan killed", f"pid={proc.pid}")

    def _reconcile_active(self) -> None:
        for dep in self.store.list_deployments(all=False):
            if dep.pid and dep.pid_started_at and _same_process(dep.pid, dep.pid_started_at):
                handle = Handle(dep.pid, None)
                handle.watcher = asyncio.get_running_loop().create_task(self._watch_adopted(dep.name, handle))
                self.handles[dep.name] = handle
                if dep.status != "running":
                    self.store.update_deployment(dep.name, status="running")
                self.lifecycle(dep.name, "adopted", f"pid={dep.pid} still running after tursid restart")
                host = "127.0.0.1" if dep.host in ("0.0.0.0", "") else dep.host
                self._start_health(dep, f"http://{host}:{dep.port}/ready")
            else:
                self.store.update_deployment(
                    dep.name,
                    status="exited",
                    pid=None,
                    finished_at=time.time(),
                    reason="worker gone while tursid was down",
                )
                self.lifecycle(dep.name, "exited", "worker gone while tursid was down")


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (SO_REUSEADDR, so a port a worker just left is free again)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host or "0.0.0.0", port), family=family, backlog=1024)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int, started_at: float) -> bool:
    created = _create_time(pid)
    return created is not None and abs(created - started_at) < 0.05 and _alive(pid)


def _alive(pid: int, proc: asyncio.subprocess.Process | None = None) -> bool:
    if proc is not None:
        return proc.returncode is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


__all__ = ["ACTIVE", "Supervisor"]
