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
