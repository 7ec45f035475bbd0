"""Memory sizes as people write them: ``3G``, ``512M``, ``2.5GiB``, ``800MB``, a number of bytes (powers of 1024)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes; ValueError for anything else."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size (like 3G, 512M or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
