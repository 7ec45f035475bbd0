from __future__ import annotations

from pathlib import Path

import pytest

from tursi.core.hardware import detect, detect_cached, parse_cpuinfo, target_profiles

X86 = """processor\t: 0
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 pni ssse3 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni amx_int8

processor\t: 1
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 pni ssse3 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni amx_int8

processor\t: 2
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 pni ssse3 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni amx_int8
"""
RPI5 = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU part\t: 0xd0b\n\n"
    for i in range(4)
)


@pytest.mark.parametrize(
    ("text", "arch", "features", "cores"),
    [
        (
            X86,
            "x86_64",
            ("amx_int8", "avx", "avx2", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "f16c", "fma"),
            2,
        ),  # hyperthreads share a core id
        (RPI5, "aarch64", ("dotprod", "neon"), 4),  # no core ids on ARM: processors count
        ("", "x86_64", (), None),
    ],
)
def test_parse_cpuinfo(text: str, arch: str, features: tuple[str, ...], cores: int | None) -> None:
    got_features, got_cores = parse_cpuinfo(text, arch)
    assert got_features == features
    if cores is not None:
        assert got_cores == cores


def _fake_root(tmp_path: Path, cpuinfo: str, model: str | None = None, tegra: bool = False) -> Path:
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo)
    (tmp_path / "proc/meminfo").write_text("MemTotal:        8000000 kB\nMemFree: 1 kB\n")
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("boot-1\n")
    if model:
        (tmp_path / "proc/device-tree").mkdir()
        (tmp_path / "proc/device-tree/model").write_text(model + "\x00")
    if tegra:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    return tmp_path


def test_detects_a_raspberry_pi(tmp_path: Path) -> None:
    hw = detect(_fake_root(tmp_path, RPI5, model="Raspberry Pi 5 Model B Rev 1.0"), machine="aarch64")
    assert (hw.arch, hw.features, hw.physical_cores) == ("aarch64", ("dotprod", "neon"), 4)
    assert hw.device == "Raspberry Pi 5 Model B Rev 1.0"
    assert hw.mem_total_bytes == 8000000 * 1024
    assert hw.is_arm
    assert hw.gpu is None


def test_detects_a_jetson(tmp_path: Path) -> None:
    hw = detect(
        _fake_root(tmp_path, RPI5, model="NVIDIA Jetson Orin Nano Developer Kit", tegra=True), machine="aarch64"
    )
    assert hw.gpu == "nvidia-jetson"
    assert "Jetson" in hw.device


def test_probe_is_cached_per_boot(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root", X86)
    home = tmp_path / "home"
    home.mkdir()
    first = detect_cached(home, root)
    (root / "proc/cpuinfo").write_text("")  # a changed machine within the same boot is not re-probed
    assert detect_cached(home, root) == first
    (root / "proc/sys/kernel/random/boot_id").write_text("boot-2\n")
    assert detect_cached(home, root).features == ()  # a new boot probes again


def test_target_profiles_are_complete() -> None:
    profiles = target_profiles()
    assert {"rpi4", "rpi5", "jetson-orin-nano", "x86-64-v3", "x86-64-v4"} <= set(profiles)
    for name, hw in profiles.items():
        assert hw.name == name
        assert hw.physical_cores > 0
        assert hw.mem_total_bytes > 0
        assert hw.features


def test_this_machine() -> None:
    hw = detect()
    assert hw.physical_cores >= 1
    assert hw.mem_total_bytes > 0
