"""POST /v1/embeddings (OpenAI shape) on any runtime that embeds."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from tursi.core.errors import InvalidRequest
from tursi.http.guards import read_json
from tursi.worker.state import STATE, check_model, observed, require_task

MAX_INPUTS = 2048
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


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    st = request.app[STATE]
    with observed(st, "/v1/embeddings") as obs:
        runtime = require_task(st, "embeddings")
        body = await read_json(request)
        check_model(st, body)
        texts, fmt = parse_embedding_request(body)
        if st.batcher is not None:  # coalesced with concurrent requests into one session run
            vectors, counts = await st.batcher.submit(texts)
            obs.tokens = sum(counts)
        else:
            loop = asyncio.get_running_loop()
            async with st.gate.slot():
                vectors, obs.tokens = await loop.run_in_executor(st.executor, runtime.embed, texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
        obs.status = 200
        usage = {"prompt_tokens": obs.tokens, "total_tokens": obs.tokens}
        return web.json_response({"object": "list", "data": data, "model": st.name, "usage": usage})


def _encode(vector: Any, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
