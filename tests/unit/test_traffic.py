from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tursi.daemon.thermals import temperatures, throttling
from tursi.daemon.traffic import parse_metrics, quantile, rates
from tursi.http.metrics import Metrics


def _page(latencies: list[float], tokens: int = 0) -> str:
    m = Metrics()
    for s in latencies:
        m.observe("/v1/embeddings", 200, s, tokens)
    return m.render("d", rate_limited=3)


def test_rates_and_quantiles_between_two_pages() -> None:
    before = parse_metrics(_page([0.003] * 10, tokens=5))
    after = parse_metrics(_page([0.003] * 10 + [0.02] * 9 + [0.4], tokens=5))
    r = rates(before, after, seconds=2.0)
    assert r["requests"] == 20
    assert r["requests_per_s"] == 5.0
    assert r["tokens_per_s"] == 25.0
    assert r["p50_s"] == 0.025  # the bucket holding the median of this interval's 10 requests
    assert r["p95_s"] == 0.5
    assert r["rate_limited"] == 3
    assert quantile(before.buckets, before.buckets, 0.5) is None  # no traffic: no latency
    assert rates(None, after, 0)["requests_per_s"] is None


@pytest.mark.parametrize(
    "bad",
    [
        'tursi_requests_total{route="forged"} zz',  # what a newline in a label used to write into the page
        'tursi_requests_total{route="x\\"} 5',  # an unterminated label value
        "tursi_requests_total{route=} 5",
        "tursi_requests_total 1 2 3",
        "tursi_requests_total{} NaN",
        "}{ garbage",
    ],
)
def test_a_line_that_does_not_parse_is_skipped(bad: str) -> None:
    """One bad line must not cost tursid the whole page (its sampler serves every deployment)."""
    page = _page([0.003] * 4, tokens=2)
    head, tail = page.split("tursi_tokens_total{", 1)
    counters = parse_metrics(head + bad + "\n" + "tursi_tokens_total{" + tail)
    assert counters == parse_metrics(page)
    assert (counters.requests, counters.tokens, counters.limited) == (4, 8, 3)
    assert counters.buckets["+Inf"] == 4


def test_label_values_are_escaped() -> None:
    """A route label holding a quote, a backslash, a newline or a brace stays one sample."""
    route = '/v1/x"} 1\ntursi_requests_total{route="forged"} 9\\'
    m = Metrics()
    m.observe(route, 200, 0.01)
    page = m.render('dep"\n')
    samples = [s for f in text_string_to_metric_families(page) if f.name == "tursi_requests" for s in f.samples]
    assert [(s.labels["route"], s.labels["deployment"], s.value) for s in samples] == [(route, 'dep"\n', 1)]
    assert parse_metrics(page).requests == 1


def test_thermal_zones_and_pi_throttling(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61234\n")
    assert temperatures(tmp_path) == {"cpu-thermal": 61.2}
    flags = tmp_path / "get_throttled"
    flags.write_text("50005\n")  # under-voltage and throttled now (bits 0 and 2), and since boot
    t = throttling(flags)
    assert t["under_voltage"] is True
    assert t["throttled"] is True
    assert t["freq_capped"] is False
    assert throttling(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("page", "counted"),
    [
        ('tursi_requests_total{route="/v1/embeddings",status="200"} 7\n', 7),
        ("tursi_requests_total{} 7\n" + "#" * (2 << 20), None),  # over the page cap: not read, not counted
        (b"\xff\xfe\ntursi_requests_total{} 3\n", 3),  # bytes that are not UTF-8
    ],
)
def test_the_sampler_survives_any_metrics_page(tmp_path: Path, page: str | bytes, counted: int | None) -> None:
    """What a worker (or whatever listens on its port) sends to tursid's sampler: bounded, never an exception."""
    import asyncio

    from aiohttp import web

    from tursi.daemon.sampler import Sampler
    from tursi.daemon.state import StateStore

    async def scenario() -> dict:
        app = web.Application()
        app.router.add_get("/metrics", lambda _: web.Response(body=page if isinstance(page, bytes) else page.encode()))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        sampler = Sampler(StateStore(tmp_path / "state.db"))
        await sampler.start()
        try:
            return await sampler._traffic("d", "127.0.0.1", port)
        finally:
            await sampler.close()
            await runner.cleanup()

    assert asyncio.run(scenario())["requests"] == counted
