"""What a worker's handlers share: the loaded runtime, its gate, counters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from aiohttp import web

from runtimes.protocol import (
    FOR_TASK,
    BatchEmbedder,
    Classifier,
    Embedder,
    MaskFiller,
    Reranker,
    Runtime,
    TextGenerator,
)
from tursi.core.access import parse_rate_limit
from tursi.core.errors import InvalidRequest, ModelNotFound, NotReady, TursiError, UnsupportedTask
from tursi.core.names import replica_group
from tursi.core.spec import DeploymentSpec
from tursi.core.worker_settings import WorkerSettings
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
    ctx_size: int = DeploymentSpec.ctx_size
    parallel: int = DeploymentSpec.parallel
    max_queue: int = DeploymentSpec.max_queue
    limiter: RateLimiter | None = None
    api_key_sha256: str | None = None
    gateway_sha256: str | None = None  # requests tursid's gateway passes on say whose they are
    max_batch: int = DeploymentSpec.max_batch
    batch_wait_s: float = DeploymentSpec.batch_wait_ms / 1000.0
    created: int = field(default_factory=lambda: int(time.time()))
    runtime: Runtime | None = None
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    gate: Gate = field(init=False)
    batcher: Batcher | None = None  # set once an encoder runtime that can batch is loaded

    def __post_init__(self) -> None:
        self.gate = Gate(self.max_queue)

    @classmethod
    def from_settings(cls, settings: WorkerSettings, manifest: dict[str, Any]) -> WorkerState:
        """The state of a worker tursid started with ``settings``, serving the artifact described by ``manifest``."""
        spec = settings.spec
        return cls(
            name=settings.name,
            model_ref=settings.model_ref,
            artifact=Path(settings.artifact),
            manifest=manifest,
            threads=spec.threads,
            ctx_size=spec.ctx_size,
            parallel=spec.parallel,
            max_queue=spec.max_queue,
            limiter=RateLimiter(parse_rate_limit(spec.rate_limit)) if spec.rate_limit else None,
            api_key_sha256=settings.api_key_sha256,
            gateway_sha256=settings.gateway_sha256,
            max_batch=spec.max_batch,
            batch_wait_s=spec.batch_wait_ms / 1000.0,
        )

    def runtime_loaded(self, runtime: Runtime) -> None:
        """Serve ``runtime``, once it is known to have the methods of this deployment's task (a manifest may name a
        task its runtime cannot do: it fails to load rather than fail each request)."""
        protocol = FOR_TASK.get(self.task)
        if protocol is not None and not isinstance(runtime, protocol):
            raise UnsupportedTask(f"{type(runtime).__name__} cannot serve {self.task}")
        self.runtime = runtime
        if self.task == "chat":  # as many requests in as the engine has slots; the gate's line holds the rest
            self.gate = Gate(self.max_queue, capacity=int(runtime.info().get("parallel", 1)))
        if isinstance(runtime, BatchEmbedder) and self.max_batch > 1:
            self.batcher = Batcher(
                runtime.embed_batch, self.executor, self.max_batch, self.batch_wait_s, self.max_queue
            )

    def model_ids(self) -> set[str]:
        """What a request's ``model`` may say: this deployment's name (a replica, NAME#2, answers to NAME too)
        or the reference it was deployed from."""
        return {self.name, replica_group(self.name), self.model_ref}

    @property
    def task(self) -> str:
        return str(self.manifest.get("plan", {}).get("task", "embeddings"))


STATE = web.AppKey("state", WorkerState)


@overload
def require_task(st: WorkerState, task: Literal["embeddings"]) -> Embedder: ...
@overload
def require_task(st: WorkerState, task: Literal["chat"]) -> TextGenerator: ...
@overload
def require_task(st: WorkerState, task: Literal["classification"]) -> Classifier: ...
@overload
def require_task(st: WorkerState, task: Literal["fill-mask"]) -> MaskFiller: ...
@overload
def require_task(st: WorkerState, task: Literal["rerank"]) -> Reranker: ...
def require_task(st: WorkerState, task: str) -> Runtime:
    """The runtime, if it is loaded and the deployment serves ``task``; typed as that task's protocol, which
    ``runtime_loaded`` checked it satisfies (once, not per request: isinstance on a protocol costs 15-45 us)."""
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
    st.metrics.in_flight += 1
    try:
        yield obs
    except TursiError as e:
        obs.status = e.http_status
        raise
    finally:
        st.metrics.in_flight -= 1
        st.metrics.observe(route, obs.status, time.perf_counter() - started, obs.tokens)
