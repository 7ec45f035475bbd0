from __future__ import annotations

import pytest

from runtimes.cpu_check import build_features, missing_instructions

INFO = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AVX512_VNNI = 0 | OPENMP = 1 |"
X86_AVX2_ONLY = "processor: 0\nflags\t\t: fpu pni ssse3 avx avx2 f16c fma\n"
X86_AVX512 = "flags\t\t: fpu pni avx avx2 f16c fma avx512f avx512bw\n"
ARM = "Features\t: fp asimd evtstrm aes crc32 asimddp\n"


def test_build_features_reads_only_enabled_ones() -> None:
    assert build_features(INFO) == {"SSE3", "AVX", "AVX2", "F16C", "FMA", "AVX512", "OPENMP"}


@pytest.mark.parametrize(
    ("info", "cpuinfo", "machine", "missing"),
    [
        (INFO, X86_AVX512, "x86_64", []),
        (INFO, X86_AVX2_ONLY, "x86_64", ["AVX512"]),  # a build for a bigger CPU is caught before SIGILL
        ("CPU : NEON = 1 | DOTPROD = 1 | MATMUL_INT8 = 1 |", ARM, "aarch64", ["MATMUL_INT8"]),
        ("CPU : NEON = 1 | DOTPROD = 1 |", ARM, "aarch64", []),
        (INFO, "", "x86_64", []),  # no flags to compare with: no verdict
    ],
)
def test_missing_instructions(info: str, cpuinfo: str, machine: str, missing: list[str]) -> None:
    assert missing_instructions(info, cpuinfo, machine) == missing


def test_installed_build_runs_on_this_cpu() -> None:
    from runtimes.cpu_check import check_llama_build

    check_llama_build()  # raises LlamaBuildMismatch when the wheel does not fit this machine


A72 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"  # qemu 10 -cpu cortex-a72 (Pi 4)
A76 = "Features\t: fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "advice"),
    [
        (A72, "aarch64", "`tursi pack --target rpi4`"),  # a Pi 5 build moved to a Pi 4: the Pi 4 pack
        (A76, "aarch64", "`tursi pack --target rpi5`"),
        ("Features\t: fp\n", "aarch64", "`tursi pack` for this device's profile"),  # no NEON: no profile fits
        (X86_AVX2_ONLY, "x86_64", "rebuild it here with platform/install-llama-cpp.sh"),
    ],
)
def test_refusal_names_the_pack_to_install(cpuinfo: str, machine: str, advice: str) -> None:
    from runtimes.cpu_check import remedy

    assert advice in remedy(cpuinfo, machine)


def test_a_dotprod_build_on_a_cortex_a72_is_refused() -> None:
    info = "CPU : NEON = 1 | ARM_FMA = 1 | DOTPROD = 1 | LLAMAFILE = 1 | REPACK = 1 |"  # the rpi5 pack's build
    assert missing_instructions(info, A72, "aarch64") == ["DOTPROD"]
    assert missing_instructions(info, A76, "aarch64") == []
