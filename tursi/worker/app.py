"""The worker's aiohttp app: health, readiness, models and metrics, plus the task routes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from aiohttp import web

from runtimes.protocol import TextGenerator
from tursi.core.errors import NotReady
from tursi.core.settings import HttpSettings
from tursi.http.guards import HTTP_SETTINGS, guard_middleware, same_origin_middleware
from tursi.http.problem import problem_middleware
from tursi.worker import embeddings, generation, ollama_api, tasks
from tursi.worker.limits import add_rate_headers, api_key_middleware, rate_limit_middleware
from tursi.worker.state import STATE, WorkerState

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024
routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if st.runtime is None:
        raise NotReady(st.load_error or "the model is still loading")
    return web.json_response({"status": "ready", "model": st.name, "task": st.task, **st.runtime.info()})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from tursi.http.openapi import inference

    return web.json_response(inference())


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    st = request.app[STATE]
    plan = st.manifest.get("plan", {})
    data = [
        {
            "id": st.name,
            "object": "model",
            "created": st.created,
            "owned_by": "tursi",
            "source": st.model_ref,
            "task": st.task,
            "format": plan.get("format"),
            "quantization": plan.get("quantization"),
        }
    ]
    return web.json_response({"object": "list", "data": data})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    st = request.app[STATE]
    limited = st.limiter.limited if st.limiter else 0
    waiting = st.gate.waiting + (st.batcher.waiting if st.batcher else 0)
    batches = (st.batcher.batches, st.batcher.requests) if st.batcher else None
    slots = st.runtime.slots() if isinstance(st.runtime, TextGenerator) and st.task == "chat" else None
    text = st.metrics.render(st.name, queue_waiting=waiting, rate_limited=limited, batches=batches, slots=slots)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _load_runtime(app: web.Application) -> None:
    from runtimes import load_runtime

    st = app[STATE]
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        runtime = await loop.run_in_executor(
            st.executor, load_runtime, st.artifact, st.manifest, st.threads, st.ctx_size, st.parallel
        )
        st.runtime_loaded(runtime)
    except Exception as e:  # reported through /ready and the log; the worker exits
        st.load_error = f"model failed to load: {type(e).__name__}: {e}"
        log.error("%s", st.load_error)
        os.kill(os.getpid(), signal.SIGTERM)  # run_app shuts down cleanly; main() exits non-zero
        return
    log.info("model loaded name=%s seconds=%.2f info=%s", st.name, time.perf_counter() - t0, runtime.info())


_LOADER = web.AppKey("loader", asyncio.Task)


def build_app(state: WorkerState, loopback_only: bool = False, http: HttpSettings | None = None) -> web.Application:
    app = web.Application(
        middlewares=[
            problem_middleware,
            guard_middleware(MAX_BODY, loopback_only),
            same_origin_middleware(),
            api_key_middleware,
            rate_limit_middleware,
        ],
        client_max_size=MAX_BODY,
    )
    app.on_response_prepare.append(add_rate_headers)
    app[STATE] = state
    app[HTTP_SETTINGS] = http or HttpSettings()
    app.add_routes(routes)
    app.add_routes(embeddings.routes)
    app.add_routes(generation.routes)
    app.add_routes(tasks.routes)
    app.add_routes(ollama_api.routes)

    async def start_loading(app: web.Application) -> None:
        app[_LOADER] = asyncio.get_running_loop().create_task(_load_runtime(app))

    app.on_startup.append(start_loading)
    return app


__all__ = ["NotReady", "WorkerState", "build_app"]
