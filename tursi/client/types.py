"""What tursid's control API answers, as types: the shapes ``ControlClient``'s methods return.

They are TypedDicts over the JSON as it arrives, not copies of it: `tursi ps --format json` and `inspect` print
exactly what the daemon sent, fields a newer daemon adds included. Field sets follow the daemon's answers in
``tursi/daemon`` (deployments, artifacts, bundles, system) and its OpenAPI document.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict


class Deployment(TypedDict):
    """One deployment as `ps` lists it: its record, its endpoint, warnings and the worker's resident memory."""

    name: str
    model: str
    source: str
    task: str
    format: str
    quantization: str
    artifact_key: str
    artifact_path: str
    host: str
    port: int
    status: str  # created | starting | running | restarting | exited | failed
    created_at: float
    pid: int | None
    pid_started_at: float | None
    exit_code: int | None
    reason: str | None
    started_at: float | None
    finished_at: float | None
    options: dict[str, Any]
    restart_count: int
    health: str | None
    endpoint: str
    warnings: list[str]
    mem_bytes: int | None
    mem_need_bytes: NotRequired[int | None]  # what loading it takes (measured once it has run, else estimated)
    mem_estimate_bytes: NotRequired[int | None]  # what tursid estimated from the artifact alone
    mem_budget_bytes: NotRequired[int]  # tursid's memory budget
    pinned: NotRequired[bool]
    load_seconds: NotRequired[float]  # `start`: how long loading took (0 when it was loaded)


class Event(TypedDict):
    """One entry of a deployment's lifecycle history."""

    id: int
    at: float
    deployment: str | None
    kind: str
    detail: str


class DeploymentDetail(Deployment):
    """`inspect`: a deployment plus its artifact's manifest and its latest events."""

    manifest: dict[str, Any] | None
    events: list[Event]


class Removal(TypedDict):
    """What `down`, `rmi` and `prune` removed (names or artifact keys); ``freed_bytes`` for artifacts."""

    removed: list[str]
    freed_bytes: NotRequired[int]


class Artifact(TypedDict):
    """One entry of the artifact cache (`images`); ``damaged`` says why its manifest cannot be used."""

    key: str
    source: str | None
    format: str | None
    quantization: str | None
    size_bytes: int
    created_at: float | None
    used_by: list[str]
    origin: Literal["converted", "loaded"]
    damaged: str | None


class LoadedBundle(TypedDict):
    """The answer to a bundle upload (`load`, `push`, `up FILE.tursi`)."""

    key: str
    bundle_key: str
    name: str
    target: str | None
    format: str
    quantization: str
    size_bytes: int
    already_present: bool
    warnings: list[str]


class Hardware(TypedDict):
    name: str
    arch: str
    features: list[str]
    physical_cores: int
    mem_total_bytes: int
    device: str | None
    gpu: str | None
    description: str


class SystemInfo(TypedDict):
    """`system`: the machine tursid runs on and its versions."""

    version: str
    python: str
    machine: str
    system: str
    release: str
    cpu_count_logical: int
    cpu_count_physical: int | None
    mem_total_bytes: int
    home: str
    pid: int
    schema_version: int
    hardware: Hardware
    target_profiles: list[str]


class DeploymentStats(TypedDict):
    """One row of a stats sample; the traffic figures are None until two /metrics pages were read."""

    name: str
    pid: int
    cpu_percent: float
    mem_bytes: int
    mem_limit_bytes: int
    mem_percent: float
    requests: int | None
    requests_per_s: float | None
    tokens_per_s: float | None
    p50_s: float | None
    p95_s: float | None
    rate_limited: int | None


class SystemStats(TypedDict):
    cpu_count: int
    cpu_percent: float
    load: list[float]
    mem_used_bytes: int
    mem_total_bytes: int
    mem_percent: float
    max_temperature_c: NotRequired[float | None]
    throttling: NotRequired[dict[str, bool] | None]


class StatsSnapshot(TypedDict):
    """One sample of `stats`: every running deployment and the machine."""

    at: float
    deployments: list[DeploymentStats]
    system: SystemStats


class ProgressEvent(TypedDict):
    """A progress line of `up`, `build` or `pull`: ``stage`` (with step/steps), ``status``, ``cached`` (with key)
    or ``bytes`` (a registry pull: done and total bytes of its layers)."""

    event: str
    message: str
    step: NotRequired[int]
    steps: NotRequired[int]
    key: NotRequired[str]
    done: NotRequired[int]
    total: NotRequired[int]


class ReadyEvent(TypedDict):
    """The end of a successful `up`; ``api_key`` only when the daemon generated one (shown once)."""

    event: Literal["ready"]
    deployment: Deployment
    api_key: NotRequired[str]


class BuiltEvent(TypedDict):
    """The end of a successful `build`: the artifact in the daemon's cache, ready to export as a bundle."""

    event: Literal["built"]
    key: str
    name: str
    target: str
    manifest: dict[str, Any]


OnEvent = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class BundleDownload:
    """An artifact being exported as a `.tursi` stream: read ``body`` to the end, then close it."""

    body: http.client.HTTPResponse
    length: int  # -1 when the daemon did not say
