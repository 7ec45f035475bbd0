"""Where a deployment goes: its name (asked for, or made from the model) and its port (asked for, or a free one).

A name or port is taken by a deployment record or by an `up` still in flight (``Daemon.reserved_*``). A deployment
whose conversion failed (no artifact, never started) is only a record: the next `up` may take its name.
"""

from __future__ import annotations

import socket

from tursi.core.errors import DeploymentExists, InvalidSpec, PortInUse
from tursi.core.names import NAME_RULE, is_valid_name, slug, unique_name
from tursi.daemon.context import Daemon
from tursi.daemon.state import Deployment


def pick_name(daemon: Daemon, wanted: object, display: str) -> str:
    """``wanted`` when it is valid and free (400 / 409 otherwise), else a free slug of ``display`` (-2, -3, ...)."""
    if wanted is not None:
        if not is_valid_name(wanted):
            raise InvalidSpec(f"--name must match {NAME_RULE}", param="name")
        if name_taken(daemon, wanted):
            raise DeploymentExists(f"the name '{wanted}' is already in use", hint=f"tursi down {wanted}")
        return str(wanted)
    return unique_name(slug(display), lambda name: name_taken(daemon, name))


def name_taken(daemon: Daemon, name: str) -> bool:
    """A deployment whose conversion failed (no artifact, never started) is only a record: the next up replaces it."""
    if name in daemon.reserved_names:
        return True
    dep = daemon.store.get_deployment(name)
    return dep is not None and not failed_before_start(dep)


def failed_before_start(dep: Deployment) -> bool:
    return dep.status == "failed" and not dep.artifact_key


def pick_port(daemon: Daemon, wanted: object, host: str) -> int:
    """``wanted`` when it is valid, no deployment has it and ``host`` can bind it; else a free port."""
    taken = daemon.store.ports_in_use() | daemon.reserved_ports
    if wanted is None:
        while True:
            port = _bind_probe(host, 0)
            if port not in taken:
                return port
    if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= 65535:
        raise InvalidSpec("--port must be an integer from 1 to 65535", param="port")
    if wanted in taken:
        raise PortInUse(f"port {wanted} is used by another deployment", hint="tursi ps")
    _bind_probe(host, wanted)
    return wanted


def _bind_probe(host: str, port: int) -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the worker binds the same way
            s.bind((host, port))
            return int(s.getsockname()[1])
    except OSError as e:
        raise PortInUse(f"cannot bind {host}:{port}: {e.strerror}") from e


def claim(daemon: Daemon, name: str, port: int, host: str, *, name_asked: bool, port_asked: bool) -> tuple[str, int]:
    """Claim the name and port; returns what was claimed. This runs on the event loop with no await from check to
    claim: of two `up` that were planned at the same time (in threads), the second gets 409 here instead of
    converting too and then failing at the insert. A name or port that was picked, not asked for, is picked again."""
    if name_taken(daemon, name):
        if name_asked:
            raise DeploymentExists(f"the name '{name}' is already in use", hint=f"tursi down {name}")
        name = pick_name(daemon, None, name)
    if port in daemon.store.ports_in_use() | daemon.reserved_ports:
        if port_asked:
            raise PortInUse(f"port {port} is used by another deployment", hint="tursi ps")
        port = pick_port(daemon, None, host)
    daemon.reserved_names.add(name)
    daemon.reserved_ports.add(port)
    return name, port


def release(daemon: Daemon, name: str, port: int) -> None:
    """Free a claim (the deployment is recorded by now, or its `up` failed or lost its client)."""
    daemon.reserved_names.discard(name)
    daemon.reserved_ports.discard(port)
