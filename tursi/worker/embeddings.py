"""POST /v1/embeddings (OpenAI shape) on any runtime that embeds.

On an onnxruntime encoder a request is tokenized before it queues (off the event loop when it is large), so its
cost is known before the model runs: more than MAX_REQUEST_TOKENS tokens is a 400. The batcher then runs its
encodings with other clients' work, a large request in slices, and drops what is left of a request whose client
disconnected; large answers are encoded off the event loop (tursi.worker.embed_codec).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from runtimes.onnx_embed import OnnxEmbedder
from tursi.core.errors import InvalidRequest
from tursi.http.guards import read_json
from tursi.worker.embed_codec import encode_vector, response_body, tokenize
from tursi.worker.state import STATE, WorkerState, check_model, observed, require_task

MAX_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000  # what one request may cost, after truncation to the model's length (OpenAI's cap)
CLIENT_CLOSED_REQUEST = 499  # in the metrics only: the client left before its answer, nothing was sent
routes = web.RouteTableDef()


def parse_embedding_request(body: dict[str, Any]) -> tuple[list[str], str]:
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


def check_cost(counts: list[int], limit: int = MAX_REQUEST_TOKENS) -> None:
    """A 400 naming the request's token count when it is over ``limit``."""
    tokens = sum(counts)
    if tokens > limit:
        raise InvalidRequest(
            f"'input' is {tokens} tokens; at most {limit} per request: split it into several requests",
            param="input",
            tokens=tokens,
            max_tokens=limit,
        )


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/v1/embeddings") as obs:
        require_task(st, "embeddings")
        body = await read_json(request)
        check_model(st, body)
        texts, fmt = parse_embedding_request(body)
        try:
            vectors, counts = await _embed(st, texts, lambda: _gone(request))
        except asyncio.CancelledError:
            if _gone(request):  # it left while its request waited or ran: what was left of it never ran
                obs.status = CLIENT_CLOSED_REQUEST
            raise
        obs.tokens = sum(counts)
        payload = await response_body(vectors, fmt, st.name, obs.tokens)
        obs.status = 200
        return web.Response(body=payload, content_type="application/json")


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _embed(st: WorkerState, texts: list[str], gone: Callable[[], bool]) -> tuple[Any, list[int]]:
    """Vectors and each text's token count: through the batcher when there is one, else alone behind the gate."""
    runtime = require_task(st, "embeddings")
    items: list[Any] = texts
    if isinstance(runtime, OnnxEmbedder):  # its cost is known before it queues
        items = await tokenize(runtime, texts)
        check_cost([len(e.ids) for e in items])
    if st.batcher is not None:  # coalesced with concurrent requests into shared session runs
        return await st.batcher.submit(items, gone)
    loop = asyncio.get_running_loop()
    async with st.gate.slot():
        if isinstance(runtime, OnnxEmbedder):
            return await loop.run_in_executor(st.executor, runtime.embed_batch, items)
        vectors, tokens = await loop.run_in_executor(st.executor, runtime.embed, texts)
        return vectors, [tokens]


def _encode(vector: Any, fmt: str) -> Any:
    """One vector as the answer carries it (bench/micro/test_micro.py times this; answers use embed_codec)."""
    return encode_vector(vector, fmt)
