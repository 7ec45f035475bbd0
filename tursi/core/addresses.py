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
