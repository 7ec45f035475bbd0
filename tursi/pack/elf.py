"""What the shared libraries in a wheel need from the device: their machine and the newest glibc/libstdc++ symbol
versions they reference (read from each ELF file's version-needs section with pyelftools)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tursi.core.errors import PackBuildFailed


@dataclass(frozen=True)
class LibraryNeeds:
    machine: str  # EM_AARCH64, EM_X86_64, ...
    glibc: str  # "2.34" ("" when no GLIBC_ version is referenced)
    glibcxx: str  # "3.4.29" ("" when none)
    libraries: tuple[str, ...]  # the .so files read


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def _needs_of(data: bytes) -> tuple[str, set[str]]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    elf = ELFFile(io.BytesIO(data))
    names: set[str] = set()
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _needed, auxiliaries in section.iter_versions():
                names.update(aux.name for aux in auxiliaries)
    return str(elf["e_machine"]), names


def newest(names: set[str], prefix: str) -> str:
    versions = [n[len(prefix) :] for n in names if n.startswith(prefix) and n[len(prefix) :][:1].isdigit()]
    return max(versions, key=_version_key, default="")


def wheel_library_needs(wheel: Path) -> LibraryNeeds:
    """The needs of every shared library inside ``wheel`` (all must be for one machine)."""
    machines: set[str] = set()
    names: set[str] = set()
    libraries = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if ".so" not in base or info.is_dir():
                continue
            machine, needed = _needs_of(zf.read(info))
            machines.add(machine)
            names |= needed
            libraries.append(info.filename)
    if len(machines) != 1:
        raise PackBuildFailed(
            f"{wheel.name}: expected shared libraries for one machine, found {sorted(machines) or 'none'}"
        )
    return LibraryNeeds(machines.pop(), newest(names, "GLIBC_"), newest(names, "GLIBCXX_"), tuple(sorted(libraries)))
