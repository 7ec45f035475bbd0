"""The arm64 root filesystem an emulated device runs (not a test module): Debian bookworm minbase with Python,
made once with `debootstrap --foreign` (no second stage: the packages are unpacked, and the little their maintainer
scripts would do is done by hand or run emulated) and cached under ~/.cache/tursi/rootfs/."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.arm_device import EmulatedDevice, mounts_under, output_tail

log = logging.getLogger(__name__)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOTFS_PACKAGES = ("python3", "python3-venv")  # minbase has bash, tar, coreutils, passwd (useradd), util-linux
# bump when the way the root filesystem is made changes: the cache key includes it
RECIPE_VERSION = (
    "3: debootstrap --foreign minbase, debs unpacked keeping merged-/usr, passwd/shadow, awk, real /proc dir, "
    "emulated ldconfig + pam-auth-update + stdlib compileall"
)


def rootfs_key(suite: str = SUITE, packages: tuple[str, ...] = ROOTFS_PACKAGES) -> str:
    recipe = json.dumps({"suite": suite, "packages": sorted(packages), "recipe": RECIPE_VERSION}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def cached_rootfs(cache_dir: Path | None = None) -> Path:
    """A Debian bookworm arm64 minbase root filesystem with ROOTFS_PACKAGES, built once (about a minute, needs the
    Debian mirror) and kept under ~/.cache/tursi/rootfs/bookworm-arm64-<key>. It is built in a temporary sibling
    directory and renamed into place, so a killed build leaves nothing under the final name."""
    base = cache_dir or Path.home() / ".cache" / "tursi" / "rootfs"
    final = base / f"{SUITE}-arm64-{rootfs_key()}"
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    # one build at a time: a second process (another test session on this machine) waits, then reuses it
    with open(base / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        return _build(base, final)


def _build(base: Path, final: Path) -> Path:
    _remove_abandoned_builds(base)
    build = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", dir=base))
    build.chmod(0o755)  # mkdtemp's 0700 would become the device's /
    try:
        started = time.monotonic()
        _debootstrap(build)
        _unpack_debs(build)
        _configure(build)
        _configure_in_device(build)
        _check_rootfs(build)
        if not _publish(build, final):
            shutil.rmtree(build)  # another process built it meanwhile
        log.info("built %s in %.0f s", final, time.monotonic() - started)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return final


def _remove_abandoned_builds(base: Path) -> None:
    """Build directories (.NAME.PID.RANDOM) whose process is gone were left by a killed build."""
    for entry in base.glob(".*-arm64-*.*.*"):
        pid = entry.name.split(".")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and not mounts_under(entry):
            log.info("removing the abandoned root filesystem build %s", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _debootstrap(build: Path) -> None:
    argv = ["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase"]
    argv += [f"--include={','.join(ROOTFS_PACKAGES)}", SUITE, str(build), MIRROR]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        detail = build / "debootstrap" / "debootstrap.log"
        extra = detail.read_text(errors="replace")[-2000:] if detail.exists() else ""
        raise AssertionError(f"{' '.join(argv)} failed (rc {done.returncode}):\n{output_tail(done)}\n{extra}")


def _unpack_debs(build: Path) -> None:
    """The second stage without running anything: unpack every downloaded package. `dpkg-deb -x` would replace
    debootstrap's merged-/usr links (/bin -> usr/bin, ...) by directories, so tar keeps directory links."""
    script = (
        'set -eo pipefail; for deb in "$1"/var/cache/apt/archives/*.deb; do '
        'dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$1"; done'
    )
    done = subprocess.run(["bash", "-c", script, "unpack", str(build)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise AssertionError(f"unpacking the root filesystem's packages failed:\n{output_tail(done)}")
    if not (build / "bin").is_symlink():
        raise AssertionError(f"{build}/bin is no longer a link to usr/bin: the merged-/usr layout was lost")


def _configure(build: Path) -> None:
    """What the packages' maintainer scripts would have done that a device needs, and no leftovers."""
    for deb in (build / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    shutil.rmtree(build / "debootstrap")
    if (build / "proc").is_symlink():  # debootstrap links proc -> /proc when it thinks it runs in a container
        (build / "proc").unlink()
        (build / "proc").mkdir(mode=0o555)
    etc, masters = build / "etc", build / "usr" / "share" / "base-passwd"
    users = (masters / "passwd.master").read_text()
    groups = (masters / "group.master").read_text()
    (etc / "passwd").write_text(users)
    (etc / "group").write_text(groups)
    days = int(time.time() // 86400)
    shadow_gid = next(int(line.split(":")[2]) for line in _lines(groups) if line.startswith("shadow:"))
    shadow = "".join(f"{line.split(':')[0]}:*:{days}:0:99999:7:::\n" for line in _lines(users))
    gshadow = "".join(f"{line.split(':')[0]}:*::\n" for line in _lines(groups))
    for path, text in ((etc / "shadow", shadow), (etc / "gshadow", gshadow)):
        path.write_text(text)
        path.chmod(0o640)
        os.chown(path, 0, shadow_gid)
    alternatives = etc / "alternatives"
    alternatives.mkdir(exist_ok=True)
    (alternatives / "awk").symlink_to("/usr/bin/mawk")
    (build / "usr" / "bin" / "awk").symlink_to("/etc/alternatives/awk")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


_DEVICE_SETUP = (
    "set -e; ldconfig; DEBIAN_FRONTEND=noninteractive pam-auth-update --package --force; python3 -c "
    "'import compileall, sys, sysconfig; sys.exit(not compileall.compile_dir("
    'sysconfig.get_paths()["stdlib"], quiet=1, workers=0))\''
)


def _configure_in_device(build: Path) -> None:
    """Run, emulated, the rest of what the maintainer scripts would have done: the dynamic linker's cache, PAM's
    common-* files (runuser needs them), the standard library's .pyc files (saves ~4 s on every first Python start
    in a device); then copy what they wrote from the overlay's upper directory into the root filesystem."""
    workdir = Path(tempfile.mkdtemp(prefix="tursi-rootfs-setup-"))
    with EmulatedDevice(build, workdir, "cortex-a72") as device:
        device.run(["/bin/sh", "-c", _DEVICE_SETUP], timeout=1800)
    if left := mounts_under(workdir):
        raise AssertionError(f"still mounted after setting the root filesystem up: {left}")
    upper = workdir / "upper"
    for folder, _, files in os.walk(upper):
        for name in files:
            info = os.lstat(Path(folder, name))
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                raise AssertionError(f"setting the root filesystem up deleted {Path(folder, name).relative_to(upper)}")
    script = 'set -o pipefail; tar -C "$1" -c . | tar -C "$2" -x --keep-directory-symlink'
    done = subprocess.run(["bash", "-c", script, "copy", str(upper), str(build)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"copying the set-up files into the root filesystem failed:\n{output_tail(done)}")
    shutil.rmtree(workdir)


def _check_rootfs(build: Path) -> None:
    check = (
        "import ensurepip, platform, pwd, venv; assert platform.machine() == 'aarch64', platform.machine(); "
        "assert pwd.getpwnam('root').pw_dir == '/root'; assert pwd.getpwuid(65534).pw_name == 'nobody'"
    )
    workdir = Path(tempfile.mkdtemp(prefix="tursi-rootfs-check-"))
    with EmulatedDevice(build, workdir, "cortex-a72") as device:
        device.run(["/usr/bin/python3", "-c", check], timeout=300)
        device.run(["/bin/sh", "-c", "runuser -u nobody -- id -un && echo x | awk '{print $1}'"], timeout=120)
    if mounts_under(workdir):
        return
    if compiled := [path.name for path in (workdir / "upper").rglob("*.pyc")]:
        raise AssertionError(f"the standard library's .pyc files are stale: Python rewrote {compiled[:5]}")
    shutil.rmtree(workdir)


def _publish(build: Path, final: Path) -> bool:
    try:
        build.rename(final)
    except OSError:
        if final.is_dir():
            return False
        raise
    return True
