"""A LAN on one machine: a bridge in this (the workstation's) network namespace and one network namespace per
"device", each joined to the bridge by a veth pair. A server the workstation binds to LAN_HOST (a registry) is
reachable from every device; the devices' own loopbacks are their own."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

LAN_HOST = "10.213.8.1"  # the workstation's address on the bridge; device k is 10.213.8.(k + 2)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@contextmanager
def lan(devices: int) -> Iterator[list[str]]:
    """The names of ``devices`` network namespaces on a bridge with the workstation, removed afterwards. Skips
    where namespaces or bridges cannot be made (no root / CAP_NET_ADMIN), as the two-hosts test does."""
    if shutil.which("ip") is None:
        pytest.skip("network namespaces: the `ip` command (iproute2) is not installed")
    tag = f"{os.getpid() % 10000}"
    bridge = f"tbr{tag}"
    names = [f"tursi-lan{tag}-{k}" for k in range(devices)]
    made = _ip("link", "add", bridge, "type", "bridge")
    if made.returncode != 0:
        pytest.skip(f"a bridge cannot be created here (needs root/CAP_NET_ADMIN): {made.stderr.strip()}")
    try:
        steps = [["addr", "add", f"{LAN_HOST}/24", "dev", bridge], ["link", "set", bridge, "up"]]
        for k, ns in enumerate(names):
            host_end, dev_end = f"tl{tag}h{k}", f"tl{tag}d{k}"
            steps += [
                ["netns", "add", ns],
                ["link", "add", host_end, "type", "veth", "peer", "name", dev_end, "netns", ns],
                ["link", "set", host_end, "master", bridge],
                ["link", "set", host_end, "up"],
                ["-n", ns, "addr", "add", f"10.213.8.{k + 2}/24", "dev", dev_end],
                ["-n", ns, "link", "set", dev_end, "up"],
                ["-n", ns, "link", "set", "lo", "up"],
            ]
        for step in steps:
            res = _ip(*step)
            if res.returncode != 0:
                pytest.skip(f"cannot wire the LAN here: ip {' '.join(step)}: {res.stderr.strip()}")
        yield names
    finally:
        for ns in names:
            _ip("netns", "del", ns)  # takes its veth ends with it
        _ip("link", "del", bridge)


def in_ns(ns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside network namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]
