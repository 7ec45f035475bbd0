"""What a worker's handlers share: the loaded runtime, its gate, counters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tursi.core.errors import InvalidRequest, ModelNotFound, NotReady, TursiError, UnsupportedTask
from tursi.http.metrics import Metrics
from tursi.http.ratelimit import RateLimiter
from tursi.worker.batcher import Batcher
from tursi.worker.gate import Gate


@dataclass
class WorkerState:
    name: str
    model_ref: str
    artifact: Path
    manifest: dict[str, Any]
    threads: int
    ctx_size: int = 0
    max_queue: int = 32
    limiter: RateLimiter | None = None
    api_key_sha256: str | None = None
    max_batch: int = 32
    batch_wait_s: float = 0.002
    created: int = field(default_factory=lambda: int(time.time()))
    runtime: Any = None
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    gate: Gate = field(init=False)
    batcher: Batcher | None = None  # set once an encoder runtime that can batch is loaded

    def __post_init__(self) -> None:
        self.gate = Gate(self.max_queue)

    def runtime_loaded(self, runtime: Any) -> None:
        self.runtime = runtime
        if getattr(runtime, "batchable", False) and self.max_batch > 1:
            self.batcher = Batcher(
                runtime.embed_batch, self.executor, self.max_batch, self.batch_wait_s, self.max_queue
            )

    def model_ids(self) -> set[str]:
        return {self.name, self.model_ref}

    @property
    def task(self) -> str:
        return str(self.manifest.get("plan", {}).get("task", "embeddings"))


STATE = web.AppKey("state", WorkerState)


def require_task(st: WorkerState, task: str) -> Any:
    """The runtime, if it is loaded and does ``task``."""
    if st.runtime is None:
        raise NotReady(st.load_error or "the model is still loading")
    if st.task != task:
        raise UnsupportedTask(f"deployment '{st.name}' serves {st.task}, not {task}")
    return st.runtime


def check_model(st: WorkerState, body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string", param="model")
    if model is not None and model not in st.model_ids():
        ids = ", ".join(sorted(st.model_ids()))
        raise ModelNotFound(f"model '{model}' is not served here", hint=f"use one of: {ids}")


@dataclass
class Observation:
    status: int = 500  # stays 500 when a bug escapes
    tokens: int = 0


@contextmanager
def observed(st: WorkerState, route: str) -> Iterator[Observation]:
    """Count one request in the worker's metrics with its status, latency and tokens."""
    obs = Observation()
    started = time.perf_counter()
    try:
        yield obs
    except TursiError as e:
        obs.status = e.http_status
        raise
    finally:
        st.metrics.observe(route, obs.status, time.perf_counter() - started, obs.tokens)
