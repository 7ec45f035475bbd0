"""The worker's aiohttp app: health, readiness, models, embeddings and metrics routes."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tursi.errors import InvalidRequest, ModelNotFound, NotReady
from tursi.problem import problem_middleware, read_json
from tursi.worker.metrics import Metrics

log = logging.getLogger(__name__)

MAX_INPUTS = 2048
MAX_BODY = 8 * 1024 * 1024


@dataclass
class WorkerState:
    name: str
    model_ref: str
    artifact: Path
    manifest: dict[str, Any]
    threads: int
    created: int = field(default_factory=lambda: int(time.time()))
    runtime: Any = None
    load_error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    def model_ids(self) -> set[str]:
        return {self.name, self.model_ref}


STATE = web.AppKey("state", WorkerState)
routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if st.runtime is None:
        raise NotReady(st.load_error or "the model is still loading")
    return web.json_response({"status": "ready", "model": st.name, **st.runtime.info()})


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    st = request.app[STATE]
    data = [
        {
            "id": st.name,
            "object": "model",
            "created": st.created,
            "owned_by": "tursi",
            "source": st.model_ref,
            "format": st.manifest.get("plan", {}).get("format"),
            "quantization": st.manifest.get("plan", {}).get("quantization"),
        }
    ]
    return web.json_response({"object": "list", "data": data})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    st = request.app[STATE]
    return web.Response(text=st.metrics.render(st.name), content_type="text/plain", charset="utf-8")


def parse_embedding_request(body: dict[str, Any], model_ids: set[str]) -> tuple[list[str], str]:
    model = body.get("model")
    if model is not None and model not in model_ids:
        raise ModelNotFound(f"model '{model}' is not served here", hint=f"use one of: {', '.join(sorted(model_ids))}")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise InvalidRequest("'input' must be a non-empty string or a non-empty list of strings", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("'input' items must be strings (token arrays are not supported)", param="input")
    if any(not t for t in texts):
        raise InvalidRequest("'input' must not contain empty strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(f"'input' has {len(texts)} items; at most {MAX_INPUTS} per request", param="input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    if body.get("dimensions") is not None:
        raise InvalidRequest("'dimensions' is not supported by this model", param="dimensions")
    return texts, fmt


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    st = request.app[STATE]
    started = time.perf_counter()
    status, tokens = 500, 0
    try:
        texts, fmt = parse_embedding_request(await read_json(request), st.model_ids())
        if st.runtime is None:
            raise NotReady(st.load_error or "the model is still loading")
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(st.executor, st.runtime.embed, texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
        status = 200
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": st.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
    except InvalidRequest as e:
        status = e.http_status
        raise
    except ModelNotFound:
        status = 404
        raise
    except NotReady:
        status = 503
        raise
    finally:
        st.metrics.observe("/v1/embeddings", status, time.perf_counter() - started, tokens)


def _encode(vector: Any, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


async def _load_runtime(app: web.Application) -> None:
    from runtimes import load_runtime

    st = app[STATE]
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        st.runtime = await loop.run_in_executor(st.executor, load_runtime, st.artifact, st.manifest, st.threads)
    except Exception as e:  # reported through /ready and the log; the worker exits
        st.load_error = f"model failed to load: {type(e).__name__}: {e}"
        log.exception("model failed to load")
        os.kill(os.getpid(), signal.SIGTERM)  # run_app shuts down cleanly; main() exits non-zero
        return
    log.info("model loaded name=%s seconds=%.2f info=%s", st.name, time.perf_counter() - t0, st.runtime.info())


def build_app(state: WorkerState) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY)
    app[STATE] = state
    app.add_routes(routes)

    async def start_loading(app: web.Application) -> None:
        task = asyncio.get_running_loop().create_task(_load_runtime(app))
        app[_LOADER] = task

    app.on_startup.append(start_loading)
    return app


_LOADER = web.AppKey("loader", asyncio.Task)
