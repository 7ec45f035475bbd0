"""`tursi pack`: a runtime pack for a device with no compiler and no internet (built here, no daemon needed)."""

from __future__ import annotations

from pathlib import Path

import click

from tursi.cli import render
from tursi.core.errors import InvalidSpec
from tursi.pack.targets import PYTHONS


@click.command("pack")
@click.option("--target", required=True, metavar="PROFILE", help="Device profile: rpi4, rpi5 or jetson-orin-nano.")
@click.option(
    "--python",
    "python_version",
    type=click.Choice(PYTHONS),
    default=PYTHONS[0],
    show_default=True,
    help="The device's Python (Raspberry Pi OS bookworm: 3.11; Ubuntu 24.04: 3.12).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="The pack file (default: tursi-pack-PROFILE-pyX.Y.tar)."
)
def pack_cmd(target: str, python_version: str, output: str | None) -> None:
    """Build a runtime pack: tursi[serve] and every dependency as aarch64 wheels for one Python, with llama.cpp
    cross-compiled for the profile's CPU. Install it on the device with `install-device.sh --pack FILE`."""
    from tursi.pack.build import PackProgress, build_pack

    path = Path(output or f"tursi-pack-{target}-py{python_version}.tar")
    if not path.resolve().parent.is_dir():
        raise InvalidSpec(f"the folder of {path} does not exist", param="output")
    progress = render.Progress()
    last = [0]

    def step(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        progress.note(f"[{done}/{total}]", plain=tenth > last[0])
        last[0] = max(last[0], tenth)

    ok = False
    try:
        result = build_pack(target, python_version, path, PackProgress(progress.stage, step))
        ok = True
    finally:
        progress.close(ok=ok)
    m = result.manifest
    wheels = sum(1 for f in m["files"] if f.startswith("wheels/"))
    render.out(
        f"packed {path}: {render.human_size(result.size_bytes)}, {wheels} wheels for Python {m['python']} on "
        f"{m['target']} (needs {', '.join(m['cpu_features'])}; glibc >= {m['glibc_floor']}, "
        f"libstdc++ GLIBCXX >= {m['glibcxx_floor']})"
    )
    render.out(f"sha256 {result.sha256} (compare on the device: sha256sum {path.name}; packs are not signed)")
    render.out(f"on the device: tar -xf {path.name} && sudo ./tursi-pack/install-device.sh --pack tursi-pack")


COMMANDS = [pack_cmd]
