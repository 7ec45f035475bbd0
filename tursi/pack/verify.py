"""Check a runtime pack against the device before anything is installed. Standard library only: the pack ships a
copy of this file as ``verify-pack.py``, run by ``install-device.sh --pack`` with the device's own Python.

Usage: python3 verify-pack.py PACK_DIR      exit 0: fits (prints a summary); 65: corrupt; 69: not for this device
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

FORMAT = "tursi-pack/1"
MANIFEST = "pack.json"
EXIT_CORRUPT, EXIT_MISFIT = 65, 69


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shape_problem(manifest: Any) -> str | None:
    """Why ``manifest`` is not a pack.json this verifier can read (one line), or None: every field it uses has its
    type, and every listed file is a plain relative path inside the pack."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"unknown pack format (expected {FORMAT})"
    for name in ("target", "python", "glibc_floor"):
        if not isinstance(manifest.get(name, ""), str):
            return f"{name} is not a string"
    for name in ("cpuinfo_flags", "cpu_features"):
        value = manifest.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{name} is not a list of strings"
    alternatives = manifest.get("alternatives") or {}
    if not isinstance(alternatives, dict) or not all(
        isinstance(v, list) and all(isinstance(f, str) for f in v) for v in alternatives.values()
    ):
        return "alternatives is not a map of lists of strings"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "files is not a map"
    for rel, want in files.items():
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
            return f"the file name {rel[:100]!r} is not a plain relative path inside the pack"
        if not isinstance(want, dict) or type(want.get("size")) is not int or not isinstance(want.get("sha256"), str):
            return f"{rel[:100]}: needs a size (a number) and a sha256 (text)"
    return None


def corruption(pack: Path, manifest: dict[str, Any]) -> list[str]:
    """Files missing, changed, or present but not listed."""
    problems = []
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    for rel, want in sorted(files.items()):
        path = pack / rel
        if not path.is_file() or path.is_symlink():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != want.get("size") or sha256_file(path) != want.get("sha256"):
            problems.append(f"{rel}: checksum mismatch (damaged in transfer?)")
    listed = set(files) | {MANIFEST}
    for path in sorted(pack.rglob("*")):
        rel = path.relative_to(pack).as_posix()
        if (path.is_file() or path.is_symlink()) and rel not in listed:
            problems.append(f"{rel}: not listed in {MANIFEST}")
    return problems


def cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Features", "flags"):
            flags.update(value.split())
    return flags


def misfits(manifest: dict[str, Any], machine: str, python: str, glibc: str, cpuinfo: str) -> list[str]:
    """Why this pack cannot run on the device described by the arguments (empty: it fits)."""
    target = manifest.get("target", "?")
    problems = []
    if machine not in ("aarch64", "arm64"):
        problems.append(f"the pack is for aarch64 ({target}), this machine is {machine}")
    if python != manifest.get("python"):
        problems.append(
            f"the pack's wheels are for Python {manifest.get('python')}, this python3 is {python} "
            f"(install python{manifest.get('python')} and pass --python, or build the pack with --python {python})"
        )
    floor = str(manifest.get("glibc_floor") or "0")
    if glibc and _version(glibc) < _version(floor):
        problems.append(f"the pack's libraries need glibc {floor} or newer, this device has {glibc}")
    have = cpu_flags(cpuinfo)
    lacking = sorted(set(manifest.get("cpuinfo_flags") or ()) - have) if have else []
    if lacking:
        fits = [name for name, flags in (manifest.get("alternatives") or {}).items() if set(flags) <= have]
        instead = f"; build the pack for this device instead: tursi pack --target {fits[-1]}" if fits else ""
        problems.append(
            f"the pack's llama.cpp is built for {target} and uses CPU features this CPU lacks "
            f"({', '.join(lacking)} in /proc/cpuinfo): it would die with 'Illegal instruction'{instead}"
        )
    return problems


def device_glibc() -> str:
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    except (ValueError, OSError, AttributeError):
        found = ""
    return found.split()[-1] if found.startswith("glibc ") else platform.libc_ver()[1]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(__doc__ or "")
        return 64
    pack = Path(argv[1])
    try:
        manifest = json.loads((pack / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        sys.stderr.write(f"verify-pack: {pack} is not a runtime pack: {type(e).__name__}: {str(e)[:200]}\n")
        return EXIT_CORRUPT
    problem = shape_problem(manifest)
    if problem is not None:
        sys.stderr.write(f"verify-pack: {pack}/{MANIFEST} is malformed: {problem}\n")
        return EXIT_CORRUPT
    problems = corruption(pack, manifest)
    if problems:
        sys.stderr.write("verify-pack: the pack is damaged:\n" + "".join(f"  {p}\n" for p in problems[:20]))
        return EXIT_CORRUPT
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    problems = misfits(manifest, platform.machine(), python, device_glibc(), cpuinfo)
    if problems:
        sys.stderr.write("verify-pack: this pack does not fit this device:\n" + "".join(f"  {p}\n" for p in problems))
        return EXIT_MISFIT
    sys.stdout.write(
        f"pack ok: {manifest['target']} for Python {manifest['python']}, {len(manifest['files'])} files verified, "
        f"needs {', '.join(manifest.get('cpu_features') or ['-'])} and glibc >= {manifest.get('glibc_floor')}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
