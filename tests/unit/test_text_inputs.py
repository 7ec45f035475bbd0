"""Any string a client can put in JSON reaches the real MiniLM ONNX runtime as text it embeds, or comes back as a
400 naming the input: never another exception, and never an error for a request that only shared a batch with it.

The runtime is built in-process from the bundled all-MiniLM-L6-v2 (fp32 ONNX export, the real tokenizer); the
HTTP tests serve it with the worker's own app (batching on), in-process."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tursi.core.errors import InvalidRequest
from tursi.http.guards import parse_json_object
from tursi.worker.app import build_app
from tursi.worker.batcher import Batcher
from tursi.worker.embeddings import parse_embedding_request
from tursi.worker.state import WorkerState

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# All of Unicode, lone surrogates included (JSON can escape them, UTF-8 cannot carry them), drawn often.
# (As a text() alphabet the union loses the surrogates: hypothesis keeps what UTF-8 can encode. Hence lists+join.)
any_char = st.characters(codec=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.lists(st.lists(any_char, max_size=40).map("".join), min_size=1, max_size=4)


def _lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the InvalidRequest it raises (anything else fails the test)."""
    try:
        return call()
    except InvalidRequest as e:
        return e


def _export(source: Path, out: Path, task: str) -> Path:
    from optimum.exporters.onnx import main_export

    from converters.encoder_onnx import TOKENIZER_FILES, pooling_config

    main_export(str(source), output=str(out), task=task, library_name="transformers", do_validation=False)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    (out / "pooling.json").write_text(json.dumps(pooling_config(source)), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Any:
    from runtimes.onnx_embed import OnnxEmbedder

    return OnnxEmbedder.load(_export(minilm_dir, tmp_path_factory.mktemp("minilm-onnx"), "feature-extraction"))


@FUZZ
@given(texts=texts, ascii_escapes=st.booleans())
def test_any_json_string_embeds_or_is_a_400(minilm: Any, texts: list[str], ascii_escapes: bool) -> None:
    """The worker's text path: body bytes -> read_json's parser -> request decoding -> the runtime."""
    raw = json.dumps({"input": texts}, ensure_ascii=ascii_escapes).encode("utf-8", "surrogatepass")
    # what the body says: with \\u escapes a high surrogate followed by a low one is one character
    # (U+10000 and up), so whether a text holds a lone surrogate is judged on the decoded body
    sent = json.loads(raw.decode("utf-8", "surrogatepass"))["input"]
    got = _outcome(lambda: minilm.embed_batch(parse_embedding_request(parse_json_object(raw))[0]))
    if isinstance(got, InvalidRequest):
        assert got.http_status == 400
        assert any(_lone_surrogate(t) or not t for t in sent), got.detail  # refused only for a reason
        return
    vectors, counts = got
    assert not any(_lone_surrogate(t) for t in sent)
    assert vectors.shape == (len(texts), minilm.dimension)
    assert np.isfinite(vectors).all()
    assert all(n >= 2 for n in counts)  # [CLS] and [SEP] at least


@FUZZ
@given(texts=texts)
def test_the_runtime_takes_any_string_or_names_the_one_it_refuses(minilm: Any, texts: list[str]) -> None:
    """The runtime alone (the path without batching, and what classify/fill-mask share): an InvalidRequest for
    the first text the tokenizer cannot take, never the tokenizer's own exception."""
    got = _outcome(lambda: minilm.embed(texts))
    if isinstance(got, InvalidRequest):
        bad = next(i for i, t in enumerate(texts) if _lone_surrogate(t))
        assert (got.http_status, got.extra) == (400, {"param": "input"})
        assert got.detail.startswith(f"input {bad} has a lone surrogate"), got.detail
        return
    vectors, tokens = got
    assert not any(_lone_surrogate(t) for t in texts)
    assert vectors.shape == (len(texts), minilm.dimension)
    assert tokens >= 2 * len(texts)


REQUESTS = [
    ["The cat sat on the mat."],
    ["A perfectly fine sentence.", "bad \ud800 text", "never embedded"],
    ["Another client, two texts.", "the second one"],
    ["\udfff"],
    ["The last well-behaved request."],
]


def test_an_input_the_tokenizer_refuses_fails_only_its_own_request(minilm: Any) -> None:
    """Five requests in one batch, two with a lone surrogate: those two get a 400 naming their own input's index;
    the other three get the vectors they get alone."""

    async def main() -> list[Any]:
        b = Batcher(minilm.embed_batch, ThreadPoolExecutor(1), max_batch=32, max_wait_s=0.0)
        return await asyncio.gather(*(b.submit(r) for r in REQUESTS), return_exceptions=True)

    results = asyncio.run(main())
    errors = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
    assert sorted(errors) == [1, 3], errors
    assert all(isinstance(e, InvalidRequest) and e.extra == {"param": "input"} for e in errors.values())
    assert errors[1].detail.startswith("input 1 has a lone surrogate (U+D800 at character 4)")
    assert errors[3].detail.startswith("input 0 has a lone surrogate (U+DFFF at character 0)")
    for i in (0, 2, 4):
        vectors, counts = results[i]
        alone, alone_counts = minilm.embed_batch(REQUESTS[i])
        assert counts == alone_counts
        np.testing.assert_allclose(vectors, alone, atol=1e-4)


def test_fill_mask_past_what_the_model_reads_is_a_400(tmp_path: Path, tiny_fill_mask: Path) -> None:
    """The route checks that a [MASK] is in the text; one past the tokens the model reads was a 500."""
    from runtimes.onnx_tasks import OnnxFillMask

    model = OnnxFillMask.load(_export(tiny_fill_mask, tmp_path / "fill-mask", "fill-mask"), threads=1)
    cases = [
        ("word " * 300 + "[MASK]", "input 1 has no [MASK] token within the first 128 tokens"),
        ("[MASK] \udc00", "input 1 has a lone surrogate (U+DC00 at character 7)"),
    ]
    for text, detail in cases:
        with pytest.raises(InvalidRequest) as caught:
            model.fill_mask(["Paris is the [MASK] of France.", text], 3)
        assert caught.value.detail.startswith(detail)
        assert caught.value.extra == {"param": "input"}
    assert len(model.fill_mask(["Paris is the [MASK] of France."], 3)[0][0]) == 3


def serve(runtime: Any, tmp_path: Path, scenario: Callable[[TestClient], Awaitable[Any]]) -> Any:
    """Run ``scenario`` against the worker app with the module's MiniLM runtime loaded into it."""

    async def main() -> Any:
        manifest = {"plan": {"runtime": "onnxruntime", "task": "embeddings"}, "files": {"model": "model.onnx"}}
        st = WorkerState(name="minilm", model_ref="minilm", artifact=tmp_path, manifest=manifest, threads=1)
        st.runtime_loaded(runtime)
        assert st.batcher is not None
        app = build_app(st)
        app.on_startup.clear()  # its loader would load the model again
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())


async def post_raw(client: TestClient, raw: bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/embeddings", data=raw, headers={"Content-Type": "application/json"})
    return resp.status, await resp.json(content_type=None)


BAD_BODIES = [
    (b'{"input": "x", "x": NaN}', "NaN is not accepted"),
    (b'{"input": "x", "temperature": Infinity}', "Infinity is not accepted"),
    (b'{"input": "x", "x": [-Infinity]}', "-Infinity is not accepted"),
    (b'{"input": "x", "x": {"y": 1e999}}', "1e999 is out of range"),
    (b'{"input": "x", "x": ' + b"7" * 5000 + b"}", "body is not valid JSON: Exceeds the limit (4300 digits)"),
    (rb'{"input": ["fine", "bad \\ud800 \\ud800"]}', None),  # escaped backslashes: plain text, accepted
    (rb'{"input": ["fine", "bad \\ud800 \ud800"]}', "'input' holds a string with a lone surrogate (U+D800 at"),
    (rb'{"input": "\ud83d\ude00 \\ude00 \ude00"}', "'input' holds a string with a lone surrogate (U+DE00"),
    ('{"input": "x"}'.encode("utf-16"), "the body must be JSON encoded as UTF-8"),
    (b'{"input": "\xed\xa0\x80"}', "the body is not valid UTF-8"),
]


def test_non_finite_numbers_and_text_utf8_cannot_carry_are_400(minilm: Any, tmp_path: Path) -> None:
    async def scenario(client: TestClient) -> list[tuple[int, dict[str, Any]]]:
        return [await post_raw(client, raw) for raw, _ in BAD_BODIES]

    for (raw, detail), (status, body) in zip(BAD_BODIES, serve(minilm, tmp_path, scenario), strict=True):
        if detail is None:
            assert status == 200, body
            continue
        assert (status, body["code"]) == (400, "invalid_request"), (raw[:60], body)
        assert body["detail"].startswith(detail) or detail in body["detail"], body
        assert body.get("param", "input") == "input"


def test_a_huge_body_is_parsed_off_the_event_loop(minilm: Any, tmp_path: Path) -> None:
    """8 MiB of ``[],[],...`` (2.8 million values) froze a worker, health checks included, for seconds while
    json.loads and the depth walk ran on the event loop. Health now answers while it is parsed, and the body is
    refused for its value count before json.loads builds anything."""
    n = (8 * 1024 * 1024 - 64) // 3
    big = b'{"input": [' + b",".join([b"[]"] * n) + b"]}"

    async def scenario(client: TestClient) -> tuple[int, dict[str, Any], list[float]]:
        loop = asyncio.get_running_loop()
        request = asyncio.ensure_future(post_raw(client, big))
        latencies = []
        while not request.done():
            started = loop.time()
            async with client.get("/health") as resp:
                assert resp.status == 200
            latencies.append(loop.time() - started)
        status, body = await request
        return status, body, latencies

    status, body, latencies = serve(minilm, tmp_path, scenario)
    print(f"{len(latencies)} health checks answered while the 8 MiB body was in flight; slowest {max(latencies):.3f} s")
    assert max(latencies) < 1.0  # before: the loop was blocked for the whole parse (seconds)
    assert (status, body["code"]) == (400, "invalid_request")
    assert body["detail"] == "the body has more than 100000 JSON values"
