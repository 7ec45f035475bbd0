"""The aarch64 wheels of a pack: tursi itself (built from this checkout), and every dependency of tursi[serve] for
the device's Python, pinned to the versions installed here so the device runs what the workstation tested."""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tursi import __version__
from tursi.core.errors import NotSupported, PackBuildFailed
from tursi.pack.tools import OnLine, run_tool

PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
SOURCE_PARTS = ("pyproject.toml", "README.md", "tursi", "converters", "runtimes")
NOT_PINNED = {"tursi", "llama-cpp-python"}  # built here, not downloaded


def source_root() -> Path:
    """The checkout tursi runs from (a pack carries a wheel built from it)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "tursi"' not in pyproject.read_text(encoding="utf-8"):
        raise NotSupported(
            "tursi pack builds tursi's own wheel from its source, and this tursi is not a checkout",
            hint="run it from a clone of the tursi repository installed with `pip install -e '.[convert]'`",
        )
    return root


def build_tursi_wheel(dest: Path, python: str = sys.executable) -> Path:
    """tursi's wheel, built from a clean copy of the source (a stale build/ folder never leaks into it)."""
    root = source_root()
    with tempfile.TemporaryDirectory(prefix="tursi-src-") as tmp:
        src = Path(tmp) / "tursi"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for part in SOURCE_PARTS:
            if (root / part).is_dir():
                shutil.copytree(root / part, src / part, ignore=ignore)
            else:
                shutil.copy2(root / part, src / part)
        run_tool(
            [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(src)], "building tursi's wheel"
        )
    wheels = sorted(dest.glob(f"tursi-{__version__}-*.whl"))
    if len(wheels) != 1:
        raise PackBuildFailed(f"building tursi's wheel left {len(wheels)} wheels for {__version__} in {dest}")
    return wheels[0]


def host_pins() -> list[str]:
    """``name==version`` of every distribution installed here (pip constraints: used only where resolved)."""
    pins = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in NOT_PINNED:
            pins[name] = f"{name}=={dist.version}"
    return sorted(pins.values())


def download(
    dest: Path,
    python_version: str,
    tursi_wheel: Path,
    find_links: list[Path],
    *,
    python: str = sys.executable,
    on_line: OnLine | None = None,
) -> None:
    """tursi[serve] and its whole dependency tree as aarch64 wheels for ``python_version`` into ``dest``. tursi is
    named by its wheel's path (an index may hold an unrelated project of that name); llama-cpp-python comes from
    ``find_links`` (the wheel cross-compiled here; the package index has none for aarch64)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="pins-", encoding="utf-8") as constraints:
        constraints.write("\n".join(host_pins()) + "\n")
        constraints.flush()
        _download(dest, python_version, tursi_wheel, find_links, Path(constraints.name), python, on_line)


def _download(
    dest: Path,
    python_version: str,
    tursi_wheel: Path,
    find_links: list[Path],
    constraints: Path,
    python: str,
    on_line: OnLine | None,
) -> None:
    tag = "cp" + python_version.replace(".", "")
    argv = [
        python,
        "-m",
        "pip",
        "download",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "-d",
        str(dest),
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--abi",
        tag,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-c",
        str(constraints),
    ]
    for platform_tag in PLATFORMS:
        argv += ["--platform", platform_tag]
    for link in find_links:
        argv += ["--find-links", str(link)]
    run_tool(
        [*argv, f"{tursi_wheel}[serve]"],
        f"downloading aarch64 wheels for Python {python_version}",
        on_line=on_line,
    )
