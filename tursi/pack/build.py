"""Build a runtime pack: tursi's wheel, llama.cpp cross-compiled for the target, every dependency as aarch64
wheels, the install script and the verifier, listed with their sha256 in ``pack.json``; written atomically."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tursi import __version__
from tursi.core.errors import NotSupported, PackBuildFailed
from tursi.pack import verify
from tursi.pack.crossbuild import llama_wheel
from tursi.pack.elf import LibraryNeeds, wheel_library_needs
from tursi.pack.targets import PackTarget, check_python, pack_target, pack_targets
from tursi.pack.verify import sha256_file
from tursi.pack.wheels import build_tursi_wheel, download, source_root

TOP = "tursi-pack"


@dataclass(frozen=True)
class PackResult:
    path: Path
    size_bytes: int
    sha256: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class PackProgress:
    stage: Callable[[str], None]
    step: Callable[[int, int], None]


def build_pack(target_name: str, python_version: str, output: Path, progress: PackProgress) -> PackResult:
    target, python_version = pack_target(target_name), check_python(python_version)
    _check_tools()
    output = output.resolve()
    try:
        return _build(target, python_version, output, progress)
    except OSError as e:
        raise PackBuildFailed(f"cannot write the pack {output}: {e.strerror or e}") from None


def _check_tools() -> None:
    """What the build needs on this machine, checked before minutes of work."""
    missing = [m for m in ("elftools", "wheel") if importlib.util.find_spec(m) is None]
    if missing:
        raise NotSupported(
            f"tursi pack needs {' and '.join(missing)} (pyelftools, wheel) on this workstation",
            hint="pip install -e '.[convert]' (the workstation install)",
        )


def _build(target: PackTarget, python_version: str, output: Path, progress: PackProgress) -> PackResult:
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".tursi-pack-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / TOP
        progress.stage(f"[1/4] building tursi {__version__}'s wheel")
        tursi_wheel = build_tursi_wheel(tmp / "tursi-wheel")
        progress.stage(f"[2/4] llama-cpp-python for {target.name} ({target.arm_arch}; compiled once, then cached)")
        llama = llama_wheel(target, on_step=progress.step)
        needs = wheel_library_needs(llama)
        if needs.machine != "EM_AARCH64":
            raise PackBuildFailed(f"{llama} holds {needs.machine} libraries, not aarch64 ones")
        progress.stage(f"[3/4] downloading aarch64 wheels for Python {python_version}")
        download(root / "wheels", python_version, tursi_wheel, [llama.parent])
        fetched = root / "wheels" / llama.name
        if not fetched.is_file() or sha256_file(fetched) != sha256_file(llama):
            raise PackBuildFailed("pip chose another llama-cpp-python wheel than the one cross-compiled here")
        _add_installer(root)
        manifest = _manifest(root, target, python_version, llama, needs)
        (root / verify.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        progress.stage(f"[4/4] writing {output.name}")
        _write_tar(root, tmp / "pack.tar")
        os.replace(tmp / "pack.tar", output)
    return PackResult(output, output.stat().st_size, sha256_file(output), manifest)


def _add_installer(root: Path) -> None:
    platform_dir = source_root() / "platform"
    (root / "systemd").mkdir()
    shutil.copy2(platform_dir / "install-device.sh", root / "install-device.sh")
    shutil.copy2(platform_dir / "systemd" / "tursid.service", root / "systemd" / "tursid.service")
    shutil.copy2(verify.__file__, root / "verify-pack.py")


def _manifest(root: Path, target: PackTarget, python_version: str, llama: Path, needs: LibraryNeeds) -> dict[str, Any]:
    files = {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    others = sorted(pack_targets().values(), key=lambda t: (len(t.features), t.name))
    build_info = {
        n: (llama.parent / n).read_text().strip() for n in ("CMAKE_ARGS", "COMPILER") if (llama.parent / n).is_file()
    }
    return {
        "format": verify.FORMAT,
        "tursi_version": __version__,
        "target": target.name,
        "description": target.description,
        "arch": "aarch64",
        "python": python_version,
        "cpu_features": list(target.features),
        "cpuinfo_flags": list(target.cpuinfo_flags),
        "alternatives": {t.name: list(t.cpuinfo_flags) for t in others},
        "glibc_floor": needs.glibc,
        "glibcxx_floor": needs.glibcxx,
        "llama_cpp": {
            "wheel": f"wheels/{llama.name}",
            "arm_arch": target.arm_arch,
            "cmake_args": build_info.get("CMAKE_ARGS", ""),
            "compiler": build_info.get("COMPILER", ""),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }


def _write_tar(root: Path, dest: Path) -> None:
    """An uncompressed tar (wheels are compressed already) of ``root`` as ``tursi-pack/``, owned by nobody."""

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with dest.open("wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(root, arcname=TOP, filter=normalize)
        fh.flush()
        os.fsync(fh.fileno())
