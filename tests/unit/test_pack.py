"""Runtime packs without building one (the emulated-device test builds and installs real ones): the targets, the
manifest checks the device runs before installing, the ELF reading, and the CLI's refusals."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtimes.cpu_check import ARM_FLAGS
from tursi.pack import verify
from tursi.pack.targets import CPUINFO_FLAG, pack_targets

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tursi.cli"]
A72 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
A76 = "Features\t: fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
RPI5 = {
    "format": verify.FORMAT,
    "target": "rpi5",
    "python": "3.11",
    "glibc_floor": "2.34",
    "cpu_features": ["dotprod", "neon"],
    "cpuinfo_flags": ["asimd", "asimddp"],
    "alternatives": {"rpi4": ["asimd"], "jetson-orin-nano": ["asimd", "asimddp"], "rpi5": ["asimd", "asimddp"]},
}


def test_the_verifier_runs_on_a_bare_python() -> None:
    """It runs on the device before tursi is installed: standard library only."""
    tree = ast.parse(Path(verify.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names - {"__future__"} <= set(sys.stdlib_module_names)


def test_pack_targets_agree_with_their_profiles() -> None:
    targets = pack_targets()
    assert set(targets) == {"rpi4", "rpi5", "jetson-orin-nano"}  # the x86 profiles have no pack
    for t in targets.values():
        assert ("dotprod" in t.features) == ("+dotprod" in t.arm_arch), t
        assert "neon" in t.features
    assert targets["rpi4"].arm_arch == "armv8-a"  # Cortex-A72: no dot product
    assert targets["rpi5"].cpuinfo_flags == ("asimd", "asimddp")
    # the flags a pack demands are the ones the worker's CPU check looks for
    assert {CPUINFO_FLAG["neon"], CPUINFO_FLAG["dotprod"]} == {ARM_FLAGS["NEON"], ARM_FLAGS["DOTPROD"]}


@pytest.mark.parametrize(
    ("machine", "python", "glibc", "cpuinfo", "problem"),
    [
        ("aarch64", "3.11", "2.36", A76, None),  # Pi 5, Raspberry Pi OS bookworm
        ("aarch64", "3.11", "2.35", A76, None),  # Jammy / JetPack 6
        ("x86_64", "3.11", "2.36", A76, "this machine is x86_64"),
        ("aarch64", "3.10", "2.36", A76, "this python3 is 3.10"),
        ("aarch64", "3.11", "2.31", A76, "need glibc 2.34 or newer, this device has 2.31"),
        ("aarch64", "3.11", "2.36", A72, "asimddp in /proc/cpuinfo"),
        ("aarch64", "3.11", "2.36", A72, "tursi pack --target rpi4"),  # the pack that does fit
        ("aarch64", "3.11", "2.36", "", None),  # no Features line to compare with: no verdict
    ],
)
def test_misfits(machine: str, python: str, glibc: str, cpuinfo: str, problem: str | None) -> None:
    found = verify.misfits(RPI5, machine, python, glibc, cpuinfo)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found


def make_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "tursi-pack"
    (pack / "wheels").mkdir(parents=True)
    (pack / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    (pack / "install-device.sh").write_text("echo hi\n")
    files = {
        p.relative_to(pack).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
        for p in pack.rglob("*")
        if p.is_file()
    }
    (pack / verify.MANIFEST).write_text(json.dumps({**RPI5, "files": files}))
    return pack


def test_corruption_is_found(tmp_path: Path) -> None:
    pack = make_pack(tmp_path)
    manifest = json.loads((pack / verify.MANIFEST).read_text())
    assert verify.corruption(pack, manifest) == []
    (pack / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"wheel bytez")
    (pack / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"")
    (pack / "install-device.sh").unlink()
    assert verify.corruption(pack, manifest) == [
        "install-device.sh: missing",
        "wheels/a-1.0-py3-none-any.whl: checksum mismatch (damaged in transfer?)",
        "wheels/evil-1.0-py3-none-any.whl: not listed in pack.json",
    ]


def test_the_verifier_as_the_device_runs_it(tmp_path: Path) -> None:
    pack = make_pack(tmp_path)
    script = tmp_path / "verify-pack.py"  # the pack's copy, run isolated from tursi (-I) in another folder
    script.write_bytes(Path(verify.__file__).read_bytes())
    run = subprocess.run([sys.executable, "-I", str(script), str(pack)], capture_output=True, text=True, cwd="/")
    assert run.returncode == verify.EXIT_MISFIT, run.stderr  # this test runs on x86_64
    assert "the pack is for aarch64 (rpi5), this machine is x86_64" in run.stderr
    (pack / "install-device.sh").write_text("rm -rf /\n")
    run = subprocess.run([sys.executable, "-I", str(script), str(pack)], capture_output=True, text=True, cwd="/")
    assert run.returncode == verify.EXIT_CORRUPT
    assert "install-device.sh: checksum mismatch" in run.stderr


def test_install_script_checks_the_pack_before_installing(tmp_path: Path) -> None:
    pack = make_pack(tmp_path)
    (pack / "verify-pack.py").write_bytes(Path(verify.__file__).read_bytes())  # unlisted: the pack is damaged
    prefix = tmp_path / "opt"
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "platform" / "install-device.sh"),
            "--dry-run",
            "--pack",
            str(pack),
            "--prefix",
            str(prefix),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == verify.EXIT_CORRUPT
    assert "verify-pack.py: not listed in pack.json" in run.stderr
    assert "+ " not in run.stdout  # no step ran, not even printed
    assert not prefix.exists()


def test_library_needs_of_a_wheel(tmp_path: Path) -> None:
    """Read from the real llama.cpp libraries installed here, cross-checked by scanning their bytes."""
    import re

    import llama_cpp

    from tursi.pack.elf import wheel_library_needs

    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so"))
    wheel = tmp_path / "x-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for lib in libs:
            zf.write(lib, f"x/lib/{lib.name}")
    needs = wheel_library_needs(wheel)
    assert needs.machine == "EM_X86_64"
    assert len(needs.libraries) == len(libs) >= 3
    seen = {m.decode() for lib in libs for m in re.findall(rb"GLIBC_(2\.\d+(?:\.\d+)?)\x00", lib.read_bytes())}
    assert needs.glibc == max(seen, key=lambda v: tuple(int(p) for p in v.split(".")))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--target", "x86-64-v3"], 64, "no runtime pack for target 'x86-64-v3'"),
        (["--target", "pi9"], 64, "no runtime pack for target 'pi9'"),
        (["--target", "rpi5", "--python", "3.10"], 2, "'3.10' is not one of '3.11', '3.12'"),
        (["--target", "rpi5", "-o", "/nonexistent/dir/p.tar"], 64, "the folder of /nonexistent/dir/p.tar"),
    ],
)
def test_pack_refusals(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    run = subprocess.run([*CLI, "pack", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode == code, run.stderr
    assert message in run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_install_script_refuses_a_pack_file_with_links(tmp_path: Path) -> None:
    """A pack file is unpacked as root: a link in it (here: wheels -> /etc) would let it write outside."""
    import tarfile

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        link = tarfile.TarInfo("tursi-pack/wheels")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
        for i in range(5000):  # a long listing after the link: the check must not stop reading early (SIGPIPE)
            tar.addfile(tarfile.TarInfo(f"tursi-pack/f{i}"))
    run = subprocess.run(
        ["bash", str(ROOT / "platform" / "install-device.sh"), "--dry-run", "--pack", str(evil)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == verify.EXIT_CORRUPT
    assert "entries other than files and folders under tursi-pack/" in run.stderr


@pytest.mark.parametrize(
    "broken",
    [
        '{"format": "tursi-pack/1", "files": ["a"]}',
        '{"format": "tursi-pack/1", "files": {"../../etc/passwd": {"size": 1, "sha256": "x"}}}',
        '{"format": "tursi-pack/1", "files": {"a": {"size": "1", "sha256": "x"}}}',
        '{"format": "tursi-pack/1", "files": {}, "target": 5}',
        '{"format": "tursi-pack/1", "files": {}, "cpuinfo_flags": "asimddp"}',
        '{"format": "tursi-pack/1", "files": {}, "alternatives": {"rpi4": 3}}',
        "[" * 100_000,
        "\xff not json",
    ],
)
def test_a_malformed_pack_json_is_a_clear_exit_65(tmp_path: Path, broken: str) -> None:
    """Issue 28 (low): verify-pack.py with a malformed pack.json printed a traceback. Now exit 65 with one line
    saying what is wrong, as the device's installer runs it (isolated, its own copy)."""
    pack = tmp_path / "tursi-pack"
    pack.mkdir()
    (pack / verify.MANIFEST).write_text(broken, encoding="utf-8", errors="surrogateescape")
    script = tmp_path / "verify-pack.py"
    script.write_bytes(Path(verify.__file__).read_bytes())
    run = subprocess.run([sys.executable, "-I", str(script), str(pack)], capture_output=True, text=True, cwd="/")
    assert run.returncode == verify.EXIT_CORRUPT, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("verify-pack: ")
