"""Which devices a runtime pack can be built for, from the target profiles (tursi/profiles/*.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tursi.core.errors import InvalidSpec
from tursi.core.hardware import ARM_FEATURES, PROFILES_DIR

PYTHONS = ("3.11", "3.12")  # onnxruntime >= 1.24.1 has no aarch64 wheel for 3.10
# Tursi feature name -> the /proc/cpuinfo flag a device shows for it (the inverse of hardware.ARM_FEATURES)
CPUINFO_FLAG = {feature: flag for flag, feature in ARM_FEATURES.items() if flag != "neon"}


@dataclass(frozen=True)
class PackTarget:
    name: str
    description: str
    arm_arch: str  # what llama.cpp is compiled for: -DGGML_CPU_ARM_ARCH
    features: tuple[str, ...]  # CPU features the build uses, in Tursi's names (neon, dotprod, ...)

    @property
    def cpuinfo_flags(self) -> tuple[str, ...]:
        return tuple(sorted(CPUINFO_FLAG[f] for f in self.features))


def pack_targets() -> dict[str, PackTarget]:
    """Every target profile that names an ARM architecture for llama.cpp."""
    out = {}
    for path in sorted(PROFILES_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("llama_arm_arch"):
            features = tuple(sorted(data.get("features") or ()))
            out[data["name"]] = PackTarget(data["name"], data.get("description", ""), data["llama_arm_arch"], features)
    return out


def pack_target(name: str) -> PackTarget:
    targets = pack_targets()
    if name not in targets:
        raise InvalidSpec(
            f"no runtime pack for target '{name}': packs are built for aarch64 devices",
            hint=f"targets with packs: {', '.join(sorted(targets))}; on x86 run platform/install-llama-cpp.sh",
            param="target",
        )
    return targets[name]


def check_python(version: str) -> str:
    if version not in PYTHONS:
        raise InvalidSpec(
            f"--python {version} is not supported for packs",
            hint=f"one of {', '.join(PYTHONS)} (onnxruntime has no aarch64 wheel for older Pythons)",
            param="python",
        )
    return version
