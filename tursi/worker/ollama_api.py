"""Ollama's API on the worker's port, for the apps that only speak it (Home Assistant, Open WebUI, the `ollama`
client): /api/chat, /api/generate, /api/embed, /api/embeddings, /api/tags, /api/ps, /api/show, /api/version.

The same engine and rules as the OpenAI routes: requests are translated into a GenerationRequest (``ollama_params``)
and answered in Ollama's shapes, NDJSON when streaming (Ollama streams unless ``"stream": false``). Errors are the
worker's problem+json with Ollama's ``error`` string added (``problem.py``). A request with a model and nothing to
do (no messages, no prompt) answers at once with ``done_reason: "load"``: the worker's model is already loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from runtimes.llama_sampling import Chunk
from runtimes.protocol import TextGenerator
from tursi import __version__
from tursi.core.errors import InvalidRequest
from tursi.http.guards import read_json
from tursi.http.streaming import EventStream
from tursi.worker.embeddings import _embed, check_cost, parse_embedding_request
from tursi.worker.generation import _prompt, _raise_if_error
from tursi.worker.ollama_params import check_ollama_model, parse_ollama, parse_ollama_messages
from tursi.worker.state import STATE, WorkerState, observed, require_task
from tursi.worker.structured import prompt_messages

routes = web.RouteTableDef()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _details(st: WorkerState) -> dict[str, Any]:
    plan = st.manifest.get("plan", {})
    info = st.runtime.info() if st.runtime is not None and hasattr(st.runtime, "info") else {}
    return {
        "format": plan.get("format"),
        "family": info.get("architecture", plan.get("task")),
        "families": [info.get("architecture", plan.get("task"))],
        "parameter_size": "",
        "quantization_level": plan.get("quantization"),
    }


def _entry(st: WorkerState) -> dict[str, Any]:
    size = int(st.manifest.get("size_bytes") or 0)
    return {
        "name": f"{st.name}:latest",
        "model": f"{st.name}:latest",
        "modified_at": datetime.fromtimestamp(st.created, UTC).isoformat().replace("+00:00", "Z"),
        "size": size,
        "digest": str(st.manifest.get("key", "")),
        "details": _details(st),
    }


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [_entry(request.app[STATE])]})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.Response:
    st = request.app[STATE]
    loaded = [] if st.runtime is None else [{**_entry(st), "expires_at": "0001-01-01T00:00:00Z", "size_vram": 0}]
    return web.json_response({"models": loaded})


@routes.post("/api/show")
async def show(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = await read_json(request)
    check_ollama_model(st, body, required=True)
    info = st.runtime.info() if st.runtime is not None and hasattr(st.runtime, "info") else {}
    capabilities = {"chat": ["completion"], "embeddings": ["embedding"]}.get(st.task, [st.task])
    if st.task == "chat":
        capabilities.append("tools")
    plan = st.manifest.get("plan", {})
    return web.json_response(
        {
            "modelfile": "",
            "parameters": "",
            "template": getattr(getattr(st.runtime, "template", None), "source", "") or "",
            "details": _details(st),
            "model_info": {k: v for k, v in info.items() if isinstance(v, str | int | float | bool)},
            "capabilities": capabilities,
            "modified_at": _entry(st)["modified_at"],
            "tursi": {"source": st.model_ref, "plan": plan},
        }
    )


@routes.post("/api/chat")
async def chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


@routes.post("/api/generate")
async def generate(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def _generate(request: web.Request, chat: bool) -> web.StreamResponse:
    st = request.app[STATE]
    route = "/api/chat" if chat else "/api/generate"
    with observed(st, route) as obs:
        body = await read_json(request)
        check_ollama_model(st, body, required=True)
        runtime = require_task(st, "chat")
        fmt = getattr(runtime, "tool_format", None)
        req = parse_ollama(body, chat, fmt)
        n_ctx = int(runtime.info().get("n_ctx", 0)) if hasattr(runtime, "info") else 0
        if req.num_ctx is not None and n_ctx and req.num_ctx > n_ctx:
            raise InvalidRequest(
                f"'options.num_ctx' is {req.num_ctx}; this deployment's context is {n_ctx} tokens "
                "(set with tursi up --ctx-size)",
                param="options.num_ctx",
            )
        source: list[dict[str, Any]] | str | None = req.prompt
        if chat:
            messages = parse_ollama_messages(body)
            source = prompt_messages(messages, req.gen.tools, fmt) if messages else None
        if source is None:  # Ollama's preload: the model is loaded (this worker loaded it at start)
            obs.status = 200
            return web.json_response(_final(st, chat, "load", 0, 0, 0.0, 0.0))
        started = time.perf_counter()
        async with st.gate.slot():
            prompt = await asyncio.get_running_loop().run_in_executor(st.executor, _prompt, runtime, source, req.gen)
            resp, obs.tokens = await _run(request, st, runtime, prompt, req.gen, chat, started)
        obs.status = resp.status
        return resp


def _final(
    st: WorkerState, chat: bool, reason: str, prompt_n: int, eval_n: int, prompt_s: float, eval_s: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"model": f"{st.name}:latest", "created_at": _now()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    ns = 1_000_000_000
    out.update(
        done=True,
        done_reason=reason,
        total_duration=int((prompt_s + eval_s) * ns),
        load_duration=0,
        prompt_eval_count=prompt_n,
        prompt_eval_duration=int(prompt_s * ns),
        eval_count=eval_n,
        eval_duration=int(eval_s * ns),
    )
    return out


async def _run(
    request: web.Request,
    st: WorkerState,
    runtime: TextGenerator,
    prompt: list[int],
    gen: Any,
    chat: bool,
    started: float,
) -> tuple[web.StreamResponse, int]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    transport = request.transport

    def gone() -> bool:
        return transport is None or transport.is_closing()

    def emit(item: Chunk | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody is waiting any more
            loop.call_soon_threadsafe(queue.put_nowait, item)

    job = runtime.submit(prompt, gen.sampling, emit, gone=gone, cache_prompt=gen.cache_prompt)
    stream = EventStream(request, "ndjson", what="generation")
    text: list[str] = []
    first: float | None = None
    reason = "stop"
    try:
        async with stream:
            while True:
                item = await queue.get()
                _raise_if_error(item, "format")
                first = first if first is not None else time.perf_counter()
                text.append(item.text)
                if item.text:
                    st.metrics.generated_tokens += 1
                if gen.stream and item.text and not gen.tools:
                    piece = _piece(st, chat, item.text)
                    if not await stream.send(piece):
                        break
                if item.finish_reason is not None:
                    reason = "length" if item.finish_reason == "length" else "stop"
                    break
            whole = "".join(text)
            eval_n = runtime.count_tokens(whole)
            prompt_s = (first or time.perf_counter()) - started
            final = _final(st, chat, reason, len(prompt), eval_n, prompt_s, time.perf_counter() - started - prompt_s)
            _fill_final(final, whole, gen, chat)
            if not gen.stream:
                return web.json_response(final), eval_n
            await stream.send(final)
        return await stream.finish(), eval_n
    finally:
        runtime.cancel(job)


def _fill_final(final: dict[str, Any], whole: str, gen: Any, chat: bool) -> None:
    """The last object's text: the whole reply when nothing was streamed, a call's tool_calls (arguments as
    objects, Ollama's shape) when the reply was one."""
    calls = gen.tools.as_call(whole) if gen.tools is not None else None
    if not chat:
        final["response"] = "" if gen.stream else whole
        return
    final["message"]["content"] = "" if (gen.stream and not gen.tools) or calls is not None else whole
    if calls is not None:
        final["message"]["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _args(c)}} for c in calls
        ]


def _args(call: dict[str, Any]) -> Any:
    import json

    return json.loads(call["function"]["arguments"])  # Ollama sends arguments as an object, not a JSON text


def _piece(st: WorkerState, chat: bool, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": f"{st.name}:latest", "created_at": _now()}
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    out["done"] = False
    return out


@routes.post("/api/embed")
async def embed(request: web.Request) -> web.Response:
    return await _embeddings(request, legacy=False)


@routes.post("/api/embeddings")
async def embeddings_legacy(request: web.Request) -> web.Response:
    return await _embeddings(request, legacy=True)


async def _embeddings(request: web.Request, legacy: bool) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/api/embeddings" if legacy else "/api/embed") as obs:
        body = await read_json(request)
        check_ollama_model(st, body, required=True)
        require_task(st, "embeddings")
        field = "prompt" if legacy else "input"
        if field not in body and not legacy:
            obs.status = 200  # Ollama's preload
            return web.json_response({"model": f"{st.name}:latest", "embeddings": []})
        texts, _ = parse_embedding_request({"input": body.get(field)})
        started = time.perf_counter()
        vectors, counts = await _embed(st, texts, lambda: request.transport is None or request.transport.is_closing())
        check_cost(counts)
        obs.tokens, obs.status = sum(counts), 200
        if legacy:
            return web.json_response({"embedding": [float(x) for x in vectors[0]]})
        took = int((time.perf_counter() - started) * 1_000_000_000)
        return web.json_response(
            {
                "model": f"{st.name}:latest",
                "embeddings": [[float(x) for x in v] for v in vectors],
                "total_duration": took,
                "load_duration": 0,
                "prompt_eval_count": obs.tokens,
            }
        )
