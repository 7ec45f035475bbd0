"""Does a bundle built for a target profile fit this machine? Reasons, in words, when it does not."""

from __future__ import annotations

from typing import Any

from tursi.core.hardware import HardwareProfile

_ARCH_FAMILY = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def misfits(target: dict[str, Any], device: HardwareProfile, size_bytes: int) -> list[str]:
    """Why an artifact planned for ``target`` should not run on ``device`` (empty: it fits)."""
    reasons = []
    label = target.get("name") or "its target"
    want = _ARCH_FAMILY.get(str(target.get("arch")), str(target.get("arch")))
    have = _ARCH_FAMILY.get(device.arch, device.arch)
    if want != have:
        reasons.append(f"built for {target.get('arch')} ({label}), this device is {device.arch}")
    else:
        lacking = sorted(set(target.get("features") or ()) - set(device.features))
        if lacking:
            reasons.append(f"planned for {label} with {', '.join(lacking)}, which this CPU lacks")
    if device.mem_total_bytes and size_bytes > device.mem_total_bytes:
        reasons.append(
            f"the model needs {size_bytes / 2**30:.1f} GiB, this device has {device.mem_total_bytes / 2**30:.1f} GiB"
        )
    return reasons
