"""What counts as this machine's own address, for the CLI (stdlib only) and the servers alike."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """'localhost' or a literal loopback address (any of 127.0.0.0/8, ::1); a DNS name that resolves there is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(value: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError naming ``flag`` otherwise."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag} {value!r}: use HOST:PORT, e.g. 0.0.0.0:8765")
    return host.strip("[]"), int(port)


def gateway_enabled(where: str) -> bool:
    return where.strip().lower() not in ("off", "no", "none", "")
