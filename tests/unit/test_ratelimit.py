from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tursi.errors import InvalidSpec
from tursi.ratelimit import RateLimiter, RateSpec, TokenBucket, parse_rate_limit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("spec", "limit", "window", "burst"),
    [
        ("100/minute", 100, 60, 100),
        ("10/second", 10, 1, 10),
        ("5/hour", 5, 3600, 5),
        ("100/minute;burst=20", 100, 60, 20),
        (" 3 / s ; burst = 1 ", 3, 1, 1),
    ],
)
def test_parse(spec: str, limit: int, window: int, burst: int) -> None:
    assert parse_rate_limit(spec) == RateSpec(limit, window, burst)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "100",
        "100/day",
        "-1/minute",
        "0/minute",
        "1/minute;burst=0",
        "abc/s",
        "10/minute;burst=",
        "10/minute;bust=3",
    ],
)
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(InvalidSpec, match="rate-limit"):
        parse_rate_limit(spec)


@given(st.text(max_size=40))
def test_parse_never_crashes(spec: str) -> None:
    try:
        parsed = parse_rate_limit(spec)
    except InvalidSpec:
        return
    assert parsed.limit >= 1
    assert parsed.burst >= 1


def test_bucket_refills_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1 / 6, burst=10, clock=clock)  # 10/minute
    assert [bucket.take()[0] for _ in range(11)] == [True] * 10 + [False]
    clock.now += 6
    assert bucket.take()[0] is True
    assert bucket.take()[0] is False


def test_limiter_headers_and_independent_clients() -> None:
    clock = FakeClock()
    limiter = RateLimiter(parse_rate_limit("10/minute"), clock=clock)
    decisions = [limiter.check("a") for _ in range(12)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    assert decisions[0].headers()["X-RateLimit-Remaining"] == "9"
    assert decisions[-1].headers()["Retry-After"] == "6"
    assert limiter.check("b").allowed  # another client has its own bucket
    assert limiter.limited == 2
    clock.now += 60
    assert limiter.check("a").allowed
