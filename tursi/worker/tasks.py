"""Task routes where OpenAI has no standard: POST /v1/classify and POST /v1/fill-mask."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from runtimes.protocol import Ranked
from tursi.core.errors import InvalidRequest
from tursi.http.guards import read_json
from tursi.worker.embeddings import parse_embedding_request
from tursi.worker.state import STATE, Observation, WorkerState, check_model, observed, require_task

routes = web.RouteTableDef()


def _top_k(body: dict[str, Any], default: int | None) -> int | None:
    value = body.get("top_k")
    if value is None:  # absent or null: the route's default (fill-mask: 5, not the whole vocabulary)
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidRequest("'top_k' must be an integer from 1 to 100", param="top_k")
    return value


async def _read(request: web.Request, st: WorkerState, default_k: int | None) -> tuple[list[str], int | None]:
    body = await read_json(request)
    check_model(st, body)
    texts, _ = parse_embedding_request(body)
    return texts, _top_k(body, default_k)


async def _answer(
    st: WorkerState,
    obs: Observation,
    call: Callable[[list[str], int | None], tuple[Ranked, int]],
    texts: list[str],
    k: int | None,
    key: str,
) -> web.Response:
    async with st.gate.slot():
        results, obs.tokens = await asyncio.get_running_loop().run_in_executor(st.executor, call, texts, k)
    data = [{"index": i, key: r} for i, r in enumerate(results)]
    obs.status = 200
    usage = {"prompt_tokens": obs.tokens, "total_tokens": obs.tokens}
    return web.json_response({"object": "list", "data": data, "model": st.name, "usage": usage})


@routes.post("/v1/classify")
async def classify(request: web.Request) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/v1/classify") as obs:
        runtime = require_task(st, "classification")
        texts, k = await _read(request, st, None)
        return await _answer(st, obs, runtime.classify, texts, k, "labels")


@routes.post("/v1/fill-mask")
async def fill_mask(request: web.Request) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/v1/fill-mask") as obs:
        runtime = require_task(st, "fill-mask")
        texts, k = await _read(request, st, 5)
        missing = [i for i, t in enumerate(texts) if runtime.mask_token not in t]
        if missing:
            raise InvalidRequest(f"input {missing[0]} has no {runtime.mask_token} token", param="input")
        return await _answer(st, obs, runtime.fill_mask, texts, k, "predictions")
