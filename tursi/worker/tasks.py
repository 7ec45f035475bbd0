"""Task routes where OpenAI has no standard: POST /v1/classify, /v1/fill-mask and /v1/rerank (also /rerank)."""

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


MAX_DOCUMENTS = 1000


def parse_rerank(body: dict[str, Any]) -> tuple[str, list[str], int | None, bool]:
    """(query, documents, top_n, return_documents) in the shape llama-server, Jina and Cohere accept; documents
    may be strings or ``{"text": ...}`` objects."""
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise InvalidRequest("'query' must be a non-empty string", param="query")
    raw = body.get("documents")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_DOCUMENTS:
        raise InvalidRequest(f"'documents' must be a list of 1 to {MAX_DOCUMENTS} texts", param="documents")
    docs = []
    for i, d in enumerate(raw):
        text = d.get("text") if isinstance(d, dict) else d
        if not isinstance(text, str) or not text:
            raise InvalidRequest(f"'documents[{i}]' must be a non-empty string or {{'text': ...}}", param="documents")
        docs.append(text)
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidRequest("'top_n' must be an integer >= 1", param="top_n")
    give = body.get("return_documents", False)
    if not isinstance(give, bool):
        raise InvalidRequest("'return_documents' must be true or false", param="return_documents")
    return query, docs, top_n, give


@routes.post("/v1/rerank")
@routes.post("/rerank")
async def rerank(request: web.Request) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/v1/rerank") as obs:
        runtime = require_task(st, "rerank")
        body = await read_json(request)
        check_model(st, body)
        query, docs, top_n, give = parse_rerank(body)
        async with st.gate.slot():
            scores, obs.tokens = await asyncio.get_running_loop().run_in_executor(
                st.executor, runtime.rerank, query, docs
            )
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: top_n or len(docs)]
        results: list[dict[str, Any]] = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if give:
                item["document"] = {"text": docs[i]}
            results.append(item)
        obs.status = 200
        usage = {"prompt_tokens": obs.tokens, "total_tokens": obs.tokens}
        return web.json_response({"object": "list", "model": st.name, "results": results, "usage": usage})
