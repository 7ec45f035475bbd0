"""The daemon's shared objects, reached from handlers through a typed app key."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tursi.daemon.sampler import Sampler
from tursi.daemon.supervisor import Supervisor
from tursi.hardware import HardwareProfile
from tursi.settings import Settings
from tursi.state import StateStore


@dataclass
class Daemon:
    settings: Settings
    store: StateStore
    supervisor: Supervisor
    sampler: Sampler
    hardware: HardwareProfile
    reserved_names: set[str] = field(default_factory=set)
    reserved_ports: set[int] = field(default_factory=set)


DAEMON = web.AppKey("daemon", Daemon)
