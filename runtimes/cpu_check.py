"""Check that the loaded llama.cpp build uses only instructions this CPU has.

A build made elsewhere (or with -march=native on another machine) dies with SIGILL on the first
prompt; this turns that into a clear error before any model is loaded.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

from tursi.core.hardware import ARM_FEATURES, target_profiles

# llama.cpp system-info feature -> the /proc/cpuinfo flag that must be present
X86_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
ARM_FLAGS = {
    "NEON": "asimd",
    "ARM_FMA": "asimd",
    "DOTPROD": "asimddp",
    "MATMUL_INT8": "i8mm",
    "SVE": "sve",
    "SME": "sme",
    "FP16_VA": "asimdhp",
}


X86_MACHINES = ("x86_64", "AMD64", "i686")


class LlamaBuildMismatch(RuntimeError):
    pass


def build_features(system_info: str) -> set[str]:
    """Features llama.cpp reports as compiled in (``NAME = 1``)."""
    return {m.group(1) for m in re.finditer(r"\b([A-Z0-9_]+) = 1\b", system_info)}


def cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def missing_instructions(system_info: str, cpuinfo: str, machine: str) -> list[str]:
    table = X86_FLAGS if machine in X86_MACHINES else ARM_FLAGS
    have = cpu_flags(cpuinfo)
    if not have:
        return []  # nothing to compare with (no /proc/cpuinfo flags): do not guess
    return sorted(f for f in build_features(system_info) if f in table and table[f] not in have)


def arm_pack_for(cpuinfo: str) -> str | None:
    """The most capable aarch64 target profile whose CPU features this CPU has (the runtime pack to install)."""
    have = {ARM_FEATURES[f] for f in cpu_flags(cpuinfo) if f in ARM_FEATURES}
    fits = [p for p in target_profiles().values() if p.is_arm and set(p.features) <= have]
    return max(fits, key=lambda p: (len(p.features), p.name)).name if fits else None


def remedy(cpuinfo: str, machine: str) -> str:
    if machine in X86_MACHINES:
        return "rebuild it here with platform/install-llama-cpp.sh"
    target = arm_pack_for(cpuinfo)
    pack = f"`tursi pack --target {target}`" if target else "`tursi pack` for this device's profile"
    return (
        f"install the runtime pack built for this CPU instead: {pack} on a workstation, then "
        "`install-device.sh --pack FILE` here (or build llama.cpp here with platform/install-llama-cpp.sh)"
    )


def check_llama_build(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> None:
    from runtimes.llama_native import bindings

    info = bindings().llama_print_system_info().decode("utf-8", errors="replace")
    try:
        cpuinfo = cpuinfo_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    machine = platform.machine()
    missing = missing_instructions(info, cpuinfo, machine)
    if missing:
        raise LlamaBuildMismatch(
            f"the installed llama.cpp build uses {', '.join(missing)}, which this CPU lacks "
            f"(it would die with 'Illegal instruction' at the first token); {remedy(cpuinfo, machine)}"
        )
