"""Text in, JSON out for /v1/embeddings, off the event loop when it is large.

Tokenizing (Rust, GIL released) and encoding a large answer run on two codec threads, so the event loop keeps
serving other clients and the model thread keeps running batches meanwhile. A large answer is encoded in slices of
rows: between slices the event loop gets the GIL back, so a 2,048-vector float answer (~300 ms of json.dumps) does
not stall everyone's requests. Small requests stay on the loop, where a thread hand-over would cost more.
"""

from __future__ import annotations

import asyncio
import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtimes.onnx_embed import OnnxEmbedder

TOKENIZE_OFF_LOOP_CHARS = 16 * 1024  # texts longer than this in all are tokenized on a codec thread
ENCODE_OFF_LOOP_VALUES = 64 * 1024  # answers with more numbers than this are encoded on a codec thread
ROWS_PER_SLICE = 64  # float rows json.dumps'd at a time off the loop (~10 ms for 384 dimensions)
_CODEC = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tursi-embed-codec")  # threads start on first use


async def tokenize(runtime: OnnxEmbedder, texts: list[str]) -> list[Any]:
    """The runtime's encodings of ``texts`` (an InvalidRequest naming the index of a text it cannot take)."""
    if sum(len(t) for t in texts) <= TOKENIZE_OFF_LOOP_CHARS:
        return runtime.encode(texts)
    return await asyncio.get_running_loop().run_in_executor(_CODEC, runtime.encode, texts)


async def response_body(vectors: Any, fmt: str, model: str, tokens: int) -> bytes:
    """The OpenAI-shaped JSON answer for ``vectors`` (float32 [n, dimension], or any sequence of rows)."""
    rows = len(vectors)
    if rows * len(vectors[0]) <= ENCODE_OFF_LOOP_VALUES:
        return encode_response(vectors, fmt, model, tokens)
    return await asyncio.get_running_loop().run_in_executor(_CODEC, encode_response, vectors, fmt, model, tokens)


def encode_response(vectors: Any, fmt: str, model: str, tokens: int) -> bytes:
    step = ROWS_PER_SLICE if fmt == "float" else 16 * ROWS_PER_SLICE
    data = ", ".join(_rows(vectors, fmt, start, start + step) for start in range(0, len(vectors), step))
    usage = json.dumps({"prompt_tokens": tokens, "total_tokens": tokens})
    body = f'{{"object": "list", "data": [{data}], "model": {json.dumps(model)}, "usage": {usage}}}'
    return body.encode("utf-8")


def encode_vector(vector: Any, fmt: str) -> Any:
    """One vector as the answer carries it: a list of floats, or base64 of its little-endian float32 bytes."""
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _rows(vectors: Any, fmt: str, start: int, end: int) -> str:
    """Rows ``start:end`` as JSON embedding objects, without the enclosing brackets."""
    rows = vectors[start:end]
    if fmt == "base64" or not hasattr(rows, "tolist"):
        values: list[Any] = [encode_vector(v, fmt) for v in rows]
    else:
        values = rows.tolist()  # one call for the slice: faster than a tolist() per row
    items = [{"object": "embedding", "index": start + i, "embedding": v} for i, v in enumerate(values)]
    return json.dumps(items)[1:-1]
