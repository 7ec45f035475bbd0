"""An emulated aarch64 device for the e2e tests (not a test module).

A Debian bookworm arm64 root filesystem, built once with `debootstrap --foreign` and cached, is the device's disk;
each device runs it through an overlay mount (the cached tree is never written) and `chroot`, with qemu-aarch64
registered as a binfmt_misc handler (flag F: the interpreter is opened at registration, so it works inside the chroot).
`QEMU_CPU` picks the emulated core: cortex-a72 is a Raspberry Pi 4 class core, cortex-a76 a Pi 5 one. Needs root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLER_PREFIX = "tursi-test-aarch64-"
# the ELF header of an aarch64 executable or shared object (e_machine 0xb7), as in qemu's own binfmt configuration;
# the kernel decodes the \x escapes itself
_AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
_KILL_DEADLINE_S = 15.0


def arm_tools_problem() -> str | None:
    """None when the device can be emulated here, else the reason to skip. Installs the Debian tools it needs
    (platform/install-arm-tools.sh) when they are missing; a failed install is an AssertionError, not a skip."""
    if sys.platform != "linux":
        return f"the emulated aarch64 device needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the emulated aarch64 device needs root (overlay and bind mounts, chroot, binfmt_misc)"
    if not Path("/etc/debian_version").is_file() or shutil.which("apt-get") is None:
        return "the emulated aarch64 device needs Debian (debootstrap, qemu-user from bookworm-backports)"
    problem = _binfmt_problem() or _overlay_problem()  # before installing anything: a skip installs nothing
    if problem is None:
        _install_arm_tools()
    return problem


def _install_arm_tools() -> None:
    script = ["bash", str(ROOT / "platform" / "install-arm-tools.sh")]
    if subprocess.run([*script, "--check"], capture_output=True).returncode == 0:
        return
    done = subprocess.run(script, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise AssertionError(f"platform/install-arm-tools.sh failed (rc {done.returncode}):\n{output_tail(done)}")


def _binfmt_problem() -> str | None:
    if not (BINFMT / "register").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
        if mounted.returncode != 0:
            return f"binfmt_misc cannot be mounted: {mounted.stderr.decode(errors='replace').strip()}"
        status = (BINFMT / "status").read_text().strip()
        _umount(BINFMT)  # mounted only to check: start() mounts it again
    else:
        status = (BINFMT / "status").read_text().strip()
    return None if status == "enabled" else f"binfmt_misc is {status}"


def _overlay_problem() -> str | None:
    with tempfile.TemporaryDirectory(prefix="tursi-overlay-check-") as tmp:
        dirs = [Path(tmp) / name for name in ("lower", "upper", "work", "merged")]
        for path in dirs:
            path.mkdir()
        lower, upper, work, merged = dirs
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True)
        if done.returncode != 0:
            return f"the overlay filesystem is not available: {done.stderr.decode(errors='replace').strip()}"
        subprocess.run(["umount", str(merged)], check=True)
    return None


@dataclass
class _BinfmtUse:
    """binfmt_misc is process-wide: the devices open in this process share one handler and the mount."""

    users: int = 0
    mounted_here: bool = False

    @property
    def handler(self) -> Path:
        return BINFMT / f"{HANDLER_PREFIX}{os.getpid()}"

    def acquire(self) -> None:
        if self.users == 0:
            if not (BINFMT / "register").exists():
                _mount("-t", "binfmt_misc", "binfmt_misc", str(BINFMT))
                self.mounted_here = True
            try:
                _remove_stale_handlers()
                qemu = shutil.which("qemu-aarch64") or "/usr/bin/qemu-aarch64"
                rule = f":{self.handler.name}:M::{_AARCH64_MAGIC}:{_AARCH64_MASK}:{os.path.realpath(qemu)}:F"
                (BINFMT / "register").write_text(rule)
            except BaseException:
                self.users = 1
                self.release()
                raise
        self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.handler.write_text("-1")
        if self.mounted_here:
            self.mounted_here = False
            if not any(BINFMT.glob(f"{HANDLER_PREFIX}*")):  # another test process may still use the mount
                _umount(BINFMT)


_BINFMT_USE = _BinfmtUse()


def _remove_stale_handlers() -> None:
    """Handlers of test processes that are gone (killed before they could clean up), this process's included."""
    for handler in BINFMT.glob(f"{HANDLER_PREFIX}*"):
        pid = handler.name.removeprefix(HANDLER_PREFIX)
        if pid.isdigit() and (int(pid) == os.getpid() or not Path(f"/proc/{pid}").exists()):
            with contextlib.suppress(FileNotFoundError):
                handler.write_text("-1")


class EmulatedDevice:
    """An aarch64 Debian device: `rootfs` (never written) under an overlay whose changes live in `workdir`.

    Use it as a context manager. close() unmounts everything under `workdir`; do not delete `workdir` while a device
    on it is open (the merged view has the host's /dev and /sys bound into it)."""

    def __init__(self, rootfs: Path, workdir: Path, cpu: str) -> None:
        self.rootfs = rootfs.resolve()
        self.workdir = workdir.resolve()
        self.cpu = cpu
        self.root = self.workdir / "root"
        self._holds_binfmt = False

    def __enter__(self) -> EmulatedDevice:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> EmulatedDevice:
        try:
            self._mount_overlay()
            self._check_mount_points()
            for name in ("sys", "dev"):
                _mount("--rbind", f"/{name}", str(self.root / name))
                _mount("--make-rslave", str(self.root / name))
            _mount("-t", "proc", "proc", str(self.root / "proc"))
            _BINFMT_USE.acquire()
            self._holds_binfmt = True
        except BaseException:
            self.close()
            raise
        return self

    def _mount_overlay(self) -> None:
        upper, work = self.workdir / "upper", self.workdir / "work"
        for path in (upper, work, self.root):
            path.mkdir(parents=True, exist_ok=True)
        if any(char in str(path) for path in (self.rootfs, upper, work) for char in ",:"):
            raise ValueError(f"overlay paths may not contain ',' or ':': {self.rootfs}, {self.workdir}")
        options = f"lowerdir={self.rootfs},upperdir={upper},workdir={work}"
        _mount("-t", "overlay", "overlay", "-o", options, str(self.root))

    def _check_mount_points(self) -> None:
        """A link there (debootstrap makes proc -> /proc in a container) would mount over the host's own."""
        for name in ("proc", "sys", "dev"):
            target = self.root / name
            if target.is_symlink() or not target.is_dir():
                raise AssertionError(f"{self.rootfs}/{name} is not a directory: not mounting over it")

    def env(self, cpu: str | None = None, **extra: str) -> dict[str, str]:
        """A clean environment for a process in the device. QEMU_CPU is always set: qemu's default CPU ("max")
        would claim features (SVE, i8mm) that no Raspberry Pi has."""
        return {"PATH": DEVICE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": cpu or self.cpu, **extra}

    def command(self, argv: list[str], *, cpu: str | None = None, network: bool = True) -> list[str]:
        """The host argv that runs `argv` in the device (with self.env(cpu)); network=False runs it in a fresh
        network namespace with no interface up, which proves that what it does needs no network."""
        prefix = [] if network else ["unshare", "--net"]
        return [*prefix, "chroot", str(self.root), *argv]

    def _env(self, env: dict[str, str] | None, cpu: str | None) -> dict[str, str]:
        if env is None:
            return self.env(cpu)
        return {**env, "QEMU_CPU": cpu or env.get("QEMU_CPU") or self.cpu}

    def run(
        self,
        argv: list[str],
        *,
        cpu: str | None = None,
        network: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the device and capture its output; env defaults to self.env(cpu), and QEMU_CPU is set
        in any case (to cpu, else env's, else the device's). A timeout, or with check a non-zero exit, is an
        AssertionError that quotes the output."""
        command = self.command(argv, cpu=cpu, network=network)
        try:
            done = subprocess.run(
                command,
                env=self._env(env, cpu),
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=_no_core_dumps,
            )
        except subprocess.TimeoutExpired as error:
            raise AssertionError(f"{command} timed out after {timeout} s:\n{output_tail(error)}") from None
        if check and done.returncode != 0:
            raise AssertionError(f"{command} failed with rc {done.returncode}:\n{output_tail(done)}")
        return done

    def popen(
        self,
        argv: list[str],
        *,
        cpu: str | None = None,
        network: bool = True,
        env: dict[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in the device in a session of its own (same environment rules as run); close() kills it
        if it is still running then."""
        return subprocess.Popen(
            self.command(argv, cpu=cpu, network=network),
            env=self._env(env, cpu),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_no_core_dumps,
        )

    def host_path(self, device_path: str) -> Path:
        """Where the device's `device_path` is on the host (in the overlay's merged view)."""
        return self.root / device_path.lstrip("/")

    def close(self) -> None:
        """Kill every process in the device, unmount everything under the workdir, unregister the binfmt handler.
        Idempotent; never raises (what it cannot undo is logged)."""
        try:
            self._kill_processes()
        except Exception:
            log.exception("could not kill the processes of the device at %s", self.root)
        for name in ("dev", "sys", "proc"):
            _umount(self.root / name, recursive=True)
        _umount(self.root)
        if mounts_under(self.root):
            _umount(self.root, recursive=True)  # whatever a process in the device mounted
        if self._holds_binfmt:
            self._holds_binfmt = False
            try:
                _BINFMT_USE.release()
            except Exception:
                log.exception("could not unregister %s", _BINFMT_USE.handler)
        if left := mounts_under(self.workdir):
            log.error("still mounted after closing the device: %s", left)

    def _kill_processes(self) -> None:
        deadline = time.monotonic() + _KILL_DEADLINE_S
        while pids := _processes_rooted_at(self.root):
            if time.monotonic() > deadline:
                log.error("processes of the device at %s survived SIGKILL: %s", self.root, pids)
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def cpu_features(device: EmulatedDevice, cpu: str) -> list[str]:
    """The Features line of /proc/cpuinfo as a program in the device sees it when qemu emulates `cpu`."""
    cpuinfo = device.run(["cat", "/proc/cpuinfo"], cpu=cpu, timeout=120).stdout
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Features":
            return value.split()
    raise AssertionError(f"no Features line in the emulated /proc/cpuinfo:\n{cpuinfo}")


def _processes_rooted_at(root: Path) -> list[int]:
    """Live processes whose root directory is `root` (chroot'ed into the device); zombies have none."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "root") == str(root):
                    pids.append(int(entry.name))
    return pids


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, from this process's mount table (deepest first)."""
    prefix = str(path).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"mount {' '.join(args)} failed: {done.stderr.strip()}")


def _umount(path: Path, *, recursive: bool = False) -> None:
    """Unmount `path` if it is mounted; lazily when it is busy. Logs instead of raising."""
    mounted = mounts_under(path)
    if not mounted or not recursive and str(path) not in mounted:
        return
    flags = ["-R"] if recursive else []
    for lazy in ([], ["-l"]):
        done = subprocess.run(["umount", *flags, *lazy, str(path)], capture_output=True, text=True)
        if done.returncode == 0:
            return
    log.error("could not unmount %s: %s", path, done.stderr.strip())


def _no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def output_tail(result: Any) -> str:
    """The end of a finished (or timed-out) process's captured stdout and stderr."""

    def text(value: str | bytes | None) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

    return f"stdout:\n{text(result.stdout)[-3000:]}\nstderr:\n{text(result.stderr)[-3000:]}"


def device_workdir() -> Path:
    """A fresh folder for one device's overlay and mounts, outside pytest's temporary folders: /dev and /sys are
    bound into it, and pytest prunes old temporary folders with rmtree, which must never meet a live mount left by
    a killed run. Folders of dead test processes are unmounted (lazily) and removed here first."""
    base = Path(tempfile.gettempdir()) / "tursi-arm-devices"
    base.mkdir(mode=0o700, exist_ok=True)
    for entry in base.iterdir():
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for point in mounts_under(entry):
                subprocess.run(["umount", "-l", point], capture_output=True)
            if not mounts_under(entry):
                shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
