"""SoC temperature and throttling where the platform tells: /sys/class/thermal (Pi, Jetson, most ARM boards),
psutil sensors (x86), and the Raspberry Pi firmware's throttled flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


def temperatures(root: Path = Path("/sys/class/thermal")) -> dict[str, float]:
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            temps[kind] = round(int((zone / "temp").read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    if not temps and hasattr(psutil, "sensors_temperatures"):
        for chip, entries in (psutil.sensors_temperatures() or {}).items():
            for e in entries:
                temps[f"{chip}/{e.label or 'temp'}"] = round(float(e.current), 1)
    return temps


def throttling(path: Path = THROTTLED) -> dict[str, Any] | None:
    """Raspberry Pi: bit 0 under-voltage, 1 frequency capped, 2 throttled, 3 soft temperature limit (now)."""
    try:
        flags = int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None
    return {
        "raw": hex(flags),
        "under_voltage": bool(flags & 1),
        "freq_capped": bool(flags & 2),
        "throttled": bool(flags & 4),
        "soft_temp_limit": bool(flags & 8),
    }


def thermal_line() -> dict[str, Any]:
    temps = temperatures()
    return {
        "temperatures_c": temps,
        "max_temperature_c": max(temps.values()) if temps else None,
        "throttling": throttling(),
    }
