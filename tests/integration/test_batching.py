"""Dynamic batching in a real ONNX worker: concurrent requests share model runs, each caller still gets its own
vectors and token usage; --max-batch 1 turns it off; one client's bad input fails no one else's request; a large
request runs in batches that let a small one through, and one over the token cap is refused before the model runs."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import post

pytestmark = pytest.mark.usefixtures("seeded_tiny_bert")  # conversion is not the point here: start from the cache

TEXTS = [f"sentence number {i} " + "word " * (i % 7) for i in range(48)]


def scrape(endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(endpoint.rsplit("/v1", 1)[0] + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def one(endpoint: str, text: str) -> tuple[np.ndarray, int]:
    status, body = post(endpoint + "/embeddings", {"input": text})
    assert status == 200, body
    return np.array(body["data"][0]["embedding"]), body["usage"]["prompt_tokens"]


def test_concurrent_requests_are_coalesced(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    endpoint = env.cli("up", str(tiny_bert), "--name", "b", check=True).stdout.split(": ", 1)[1].strip()
    alone = [one(endpoint, t) for t in TEXTS[:8]]  # one at a time: nothing to coalesce
    before = scrape(endpoint)
    assert before["tursi_batches_total"] == before["tursi_batched_requests_total"] == 8
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda t: one(endpoint, t), TEXTS))
    after = scrape(endpoint)
    runs = after["tursi_batches_total"] - before["tursi_batches_total"]
    served = after["tursi_batched_requests_total"] - before["tursi_batched_requests_total"]
    print(f"48 requests from 8 clients in {runs:.0f} model runs")
    assert served == 48
    assert runs < 48  # some requests shared a run
    for (v_alone, n_alone), (v_together, n_together) in zip(alone, together[:8], strict=True):
        assert n_together == n_alone  # usage is the caller's own tokens
        cos = float(v_alone @ v_together / np.linalg.norm(v_alone) / np.linalg.norm(v_together))
        assert cos > 0.99  # int8 dynamic scales per batch: batch-mates move a vector only slightly


def test_max_batch_one_turns_batching_off(env: Env, daemon: DaemonProc, tiny_bert: Path) -> None:
    endpoint = env.cli("up", str(tiny_bert), "--max-batch", "1", check=True).stdout.split(": ", 1)[1].strip()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: one(endpoint, t), TEXTS[:8]))
    assert "tursi_batches_total" not in scrape(endpoint)
    bad = env.cli("up", str(tiny_bert), "--batch-wait-ms", "5000")
    assert bad.returncode == 2  # click refuses it before any request


CLIENTS, ROUNDS = 8, 6
# What JSON can escape but UTF-8 cannot carry, so no tokenizer can take it: a lone high, a lone low, half an emoji.
UNTOKENIZABLE = ["\ud800", ["a fine text", "lone \udfff low"], "half an emoji: \ud83d!"]


def mixed_burst(endpoint: str) -> None:
    """Eight clients send together, round after round, to a batching worker; client 0 sends text the tokenizer
    refuses. Every other request is answered 200 and each of client 0's gets a 400 naming its input."""
    barrier = threading.Barrier(CLIENTS)

    def client(c: int) -> list[tuple[int, dict[str, Any]]]:
        answers = []
        for r in range(ROUNDS):
            texts = (
                UNTOKENIZABLE[r % 3] if c == 0 else [f"client {c} round {r} " + "word " * ((c + r) % 9)] * (c % 3 + 1)
            )
            barrier.wait(timeout=60)
            answers.append(post(endpoint + "/embeddings", {"input": texts}))
        return answers

    before = scrape(endpoint)
    with ThreadPoolExecutor(CLIENTS) as pool:
        bad, *good = list(pool.map(client, range(CLIENTS)))
    after = scrape(endpoint)
    good_ok = sum(status == 200 and len(body["data"]) == c % 3 + 1 for c, g in enumerate(good, 1) for status, body in g)
    bad_400 = sum((s, b.get("code"), b.get("param")) == (400, "invalid_request", "input") for s, b in bad)
    runs = after["tursi_batches_total"] - before.get("tursi_batches_total", 0)
    served = after["tursi_batched_requests_total"] - before.get("tursi_batched_requests_total", 0)
    print(
        f"\n{CLIENTS} clients x {ROUNDS} rounds: good {good_ok}/{len(good) * ROUNDS} answered 200, "
        f"bad {bad_400}/{ROUNDS} answered 400 invalid_request; {served:.0f} requests in {runs:.0f} model runs; "
        f"statuses seen: good {sorted({s for g in good for s, _ in g})}, bad {sorted({s for s, _ in bad})}"
    )
    assert good_ok == len(good) * ROUNDS
    assert bad_400 == ROUNDS, bad
    assert all("lone surrogate" in body["detail"] for _, body in bad)


def test_one_client_in_eight_sending_untokenizable_text_fails_no_one_else(
    env: Env, daemon: DaemonProc, tiny_bert: Path
) -> None:
    """The burst on a small model with MiniLM's tokenizer (tests/e2e/test_minilm.py runs it on the real MiniLM)."""
    mixed_burst(env.cli("up", str(tiny_bert), "--name", "mixed", check=True).stdout.split(": ", 1)[1].strip())


def post_slow(url: str, body: Any, timeout: float = 600) -> tuple[int, dict[str, Any]]:
    """``post`` with room for a large request on a busy machine."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def paragraphs(n: int, words: int) -> list[str]:
    """``n`` distinct texts of about ``words`` + 3 MiniLM tokens each (common words are one token)."""
    vocab = "edge devices run small models close to where the data is made and send only what matters".split()
    return [f"paragraph {i}: " + " ".join(vocab[(i + j) % len(vocab)] for j in range(words)) for i in range(n)]


@pytest.mark.slow
@pytest.mark.usefixtures("seeded_minilm")  # batching is the point, not the conversion
def test_large_requests_on_minilm(env: Env, daemon: DaemonProc) -> None:
    """The real MiniLM (at most 256 tokens a text): a large request runs in batches that let a small one through;
    one whose client disconnects stops running; one over 300,000 tokens is refused before the model runs."""
    endpoint = env.cli("up", "minilm", "--name", "fair", check=True).stdout.split(": ", 1)[1].strip()
    a_small_request_finishes_while_a_large_one_runs(endpoint)
    a_large_request_stops_when_its_client_leaves(endpoint)
    a_request_over_the_token_cap_is_a_400(endpoint)


def a_small_request_finishes_while_a_large_one_runs(endpoint: str) -> None:
    """512 paragraphs run as 16 batches of 32; a small request sent after the first batch is answered while the
    large one still has items waiting and is not yet counted as served."""
    before = scrape(endpoint)
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(post_slow, endpoint + "/embeddings", {"input": paragraphs(512, 100)})
        wait_for(lambda: scrape(endpoint)["tursi_batches_total"] > before["tursi_batches_total"], timeout=300)
        small = one(endpoint, "a small request sent while a large one runs")
        during = scrape(endpoint)
        status, body = big.result()
    after = scrape(endpoint)
    print(
        f"\nsmall answered after {during['tursi_batches_total'] - before['tursi_batches_total']:.0f} of "
        f"{after['tursi_batches_total'] - before['tursi_batches_total']:.0f} batches"
    )
    assert small[1] > 3
    assert during["tursi_batched_requests_total"] == before["tursi_batched_requests_total"] + 1  # the small one only
    assert during["tursi_queue_waiting"] >= 1  # the large one still had items waiting
    assert status == 200, body
    assert len(body["data"]) == 512
    assert after["tursi_batched_requests_total"] == before["tursi_batched_requests_total"] + 2
    assert after["tursi_batches_total"] - before["tursi_batches_total"] >= 512 // 32


def a_large_request_stops_when_its_client_leaves(endpoint: str) -> None:
    """The client of a 512-paragraph request disconnects after its first batch: the rest never runs."""
    before = scrape(endpoint)
    url = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    body = json.dumps({"input": paragraphs(512, 100)})
    conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "application/json"})
    wait_for(lambda: scrape(endpoint)["tursi_batches_total"] > before["tursi_batches_total"], timeout=300)
    conn.close()
    wait_for(lambda: scrape(endpoint)["tursi_queue_waiting"] == 0, timeout=300)
    after = scrape(endpoint)
    ran = after["tursi_batches_total"] - before["tursi_batches_total"]
    print(f"a large request whose client left ran {ran:.0f} of its 16 batches")
    assert ran < 512 // 32
    assert after["tursi_batched_requests_total"] == before["tursi_batched_requests_total"]  # never served
    assert one(endpoint, "still serving")[1] > 3


def a_request_over_the_token_cap_is_a_400(endpoint: str) -> None:
    """2,048 paragraphs of ~200 tokens (over 300,000 in all): a 400 naming the count, before the model runs."""
    before = scrape(endpoint)
    status, problem = post_slow(endpoint + "/embeddings", {"input": paragraphs(2048, 200)})
    assert status == 400, problem
    assert (problem["code"], problem["param"], problem["max_tokens"]) == ("invalid_request", "input", 300_000)
    assert problem["tokens"] > 300_000
    assert f"'input' is {problem['tokens']} tokens; at most 300000 per request" in problem["detail"]
    assert scrape(endpoint)["tursi_batches_total"] == before["tursi_batches_total"]  # refused before the model ran
    assert one(endpoint, "still serving")[1] > 3
