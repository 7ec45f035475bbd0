"""Task routes where OpenAI has no standard: POST /v1/classify and POST /v1/fill-mask."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tursi.core.errors import InvalidRequest
from tursi.http.guards import read_json
from tursi.worker.embeddings import parse_embedding_request
from tursi.worker.state import STATE, check_model, observed, require_task

routes = web.RouteTableDef()


def _top_k(body: dict[str, Any], default: int | None) -> int | None:
    value = body.get("top_k", default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidRequest("'top_k' must be an integer from 1 to 100", param="top_k")
    return value


async def _serve(request: web.Request, task: str, route: str, default_k: int | None) -> web.Response:
    st = request.app[STATE]
    with observed(st, route) as obs:
        runtime = require_task(st, task)
        body = await read_json(request)
        check_model(st, body)
        texts, _ = parse_embedding_request(body)
        k = _top_k(body, default_k)
        if task == "fill-mask":
            missing = [i for i, t in enumerate(texts) if runtime.mask_token not in t]
            if missing:
                raise InvalidRequest(f"input {missing[0]} has no {runtime.mask_token} token", param="input")
        call = runtime.classify if task == "classification" else runtime.fill_mask
        async with st.gate.slot():
            results, obs.tokens = await asyncio.get_running_loop().run_in_executor(st.executor, call, texts, k)
        key = "labels" if task == "classification" else "predictions"
        data = [{"index": i, key: r} for i, r in enumerate(results)]
        obs.status = 200
        usage = {"prompt_tokens": obs.tokens, "total_tokens": obs.tokens}
        return web.json_response({"object": "list", "data": data, "model": st.name, "usage": usage})


@routes.post("/v1/classify")
async def classify(request: web.Request) -> web.Response:
    return await _serve(request, "classification", "/v1/classify", None)


@routes.post("/v1/fill-mask")
async def fill_mask(request: web.Request) -> web.Response:
    return await _serve(request, "fill-mask", "/v1/fill-mask", 5)
