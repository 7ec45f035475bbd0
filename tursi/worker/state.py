"""What a worker's handlers share: the loaded runtime, its gate, counters."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tursi.errors import ModelNotFound, NotReady, UnsupportedTask
from tursi.worker.gate import Gate
from tursi.worker.metrics import Metrics


@dataclass
class WorkerState:
    name: str
    model_ref: str
    artifact: Path
    manifest: dict[str, Any]
    threads: int
    ctx_size: int = 0
    max_queue: int = 32
    created: int = field(default_factory=lambda: int(time.time()))
    runtime: Any = None
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    gate: Gate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = Gate(self.max_queue)

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
    if model is not None and model not in st.model_ids():
        ids = ", ".join(sorted(st.model_ids()))
        raise ModelNotFound(f"model '{model}' is not served here", hint=f"use one of: {ids}")
