"""Hardware profile: what this machine can run, read from /proc and /sys (py-cpuinfo is ~1.3 s: too slow).

The probe is cached per boot under TURSI_HOME. Target profiles (platform/profiles/*.json) are the same
data for machines we build for but do not run on (``--target rpi5``).
"""

from __future__ import annotations

import json
import os
import platform as py_platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tursi.core.errors import InvalidSpec

# /proc/cpuinfo flag -> Tursi feature name
X86_FEATURES = {
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
}
ARM_FEATURES = {
    "asimd": "neon",
    "neon": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "bf16": "bf16",
}
PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"  # platform/profiles links here


@dataclass(frozen=True)
class HardwareProfile:
    name: str  # "detected" or a target profile's name
    arch: str
    features: tuple[str, ...]
    physical_cores: int
    mem_total_bytes: int
    device: str | None = None
    gpu: str | None = None
    description: str = ""

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64", "armv7l", "armv8l")

    @property
    def has_vnni(self) -> bool:
        return any(f in self.features for f in ("avx512_vnni", "avx_vnni"))

    def simd_summary(self) -> str:
        return ", ".join(self.features) or "none detected"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HardwareProfile:
        fields: dict[str, Any] = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["features"] = tuple(sorted(fields.get("features") or ()))
        return cls(**fields)


def parse_cpuinfo(text: str, arch: str) -> tuple[tuple[str, ...], int]:
    """(features, physical cores) from /proc/cpuinfo text."""
    table = ARM_FEATURES if arch.startswith(("aarch", "arm")) else X86_FEATURES
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    processors = 0
    block: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if block:
                processors += "processor" in block
                if "core id" in block:
                    cores.add((block.get("physical id", "0"), block["core id"]))
            block = {}
            continue
        key, _, value = line.partition(":")
        block[key.strip()] = value.strip()
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    features = tuple(sorted({table[f] for f in flags if f in table}))
    return features, len(cores) or processors or (os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _device(root: Path) -> tuple[str | None, str | None]:
    model = _read(root / "proc/device-tree/model")
    gpu = None
    if (root / "etc/nv_tegra_release").exists():
        gpu = "nvidia-jetson"
        model = model or "NVIDIA Jetson"
    elif (root / "proc/driver/nvidia/gpus").is_dir() or (root / "dev/nvidia0").exists():
        gpu = "nvidia"
    return model, gpu


def detect(root: Path = Path("/"), machine: str | None = None) -> HardwareProfile:
    arch = machine or py_platform.machine()
    features, cores = parse_cpuinfo(_read(root / "proc/cpuinfo") or "", arch)
    mem = 0
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    device, gpu = _device(root)
    return HardwareProfile("detected", arch, features, cores, mem, device, gpu, "this machine")


def detect_cached(home: Path, root: Path = Path("/")) -> HardwareProfile:
    """The probe, cached per boot in $TURSI_HOME/hardware.json."""
    boot = _read(root / "proc/sys/kernel/random/boot_id") or "unknown"
    cache = home / "hardware.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("boot_id") == boot:
            return HardwareProfile.from_dict(data["profile"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    profile = detect(root)
    try:
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boot_id": boot, "profile": profile.to_dict()}), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass
    return profile


def target_profiles(directory: Path = PROFILES_DIR) -> dict[str, HardwareProfile]:
    out = {}
    for f in sorted(directory.glob("*.json")):
        data = json.loads(f.read_text(encoding="utf-8"))
        out[data["name"]] = HardwareProfile.from_dict(data)
    return out


def load_target(name: str, directory: Path = PROFILES_DIR) -> HardwareProfile:
    profiles = target_profiles(directory)
    if name not in profiles:
        raise InvalidSpec(
            f"unknown target profile '{name}'", hint=f"known: {', '.join(sorted(profiles))}", param="target"
        )
    return profiles[name]
