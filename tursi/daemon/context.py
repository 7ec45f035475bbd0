"""The daemon's shared objects, reached from handlers through a typed app key."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tursi.core.hardware import HardwareProfile
from tursi.core.settings import Settings
from tursi.daemon.gateway import Gateway
from tursi.daemon.residency import Residency
from tursi.daemon.sampler import Sampler
from tursi.daemon.state import StateStore
from tursi.daemon.supervisor import Supervisor
from tursi.daemon.ui_sessions import Sessions


@dataclass
class Daemon:
    settings: Settings
    store: StateStore
    supervisor: Supervisor
    sampler: Sampler
    hardware: HardwareProfile
    residency: Residency
    gateway: Gateway
    reserved_names: set[str] = field(default_factory=set)
    reserved_ports: set[int] = field(default_factory=set)
    ui_sessions: Sessions = field(default_factory=Sessions)  # the dashboard's login tokens and sessions
    ui_address: tuple[str, int] | None = None  # where the dashboard is served, once it is


DAEMON = web.AppKey("daemon", Daemon)
