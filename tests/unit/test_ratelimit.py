from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tursi.core.access import RateSpec, parse_rate_limit
from tursi.core.errors import InvalidSpec
from tursi.http.ratelimit import MAX_CLIENTS, RateLimiter, TokenBucket
from tursi.worker.limits import address_group


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


def test_a_full_table_evicts_no_one() -> None:
    """Rotating client ids (addresses) fills the table, but a limited client's bucket is not pushed out:
    newcomers beyond the table share one overflow bucket, and only refilled buckets are forgotten."""
    clock = FakeClock()
    limiter = RateLimiter(parse_rate_limit("10/minute"), clock=clock)
    assert [limiter.check("a").allowed for _ in range(11)] == [True] * 10 + [False]
    newcomers = [limiter.check(f"rotating-{i}").allowed for i in range(2 * MAX_CLIENTS)]
    assert len(limiter.buckets) == MAX_CLIENTS
    assert newcomers.count(True) == MAX_CLIENTS - 1 + 10  # a bucket each while there was room, then one shared
    assert not limiter.check("a").allowed  # still limited: its bucket was not evicted
    assert not limiter.check("another").allowed  # the overflow bucket is spent
    clock.now += 60  # every bucket refilled: forgetting them loses nothing
    assert limiter.check("another").allowed
    assert "another" in limiter.buckets
    assert len(limiter.buckets) == MAX_CLIENTS


@pytest.mark.parametrize(
    ("remote", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # one host's /64 is one client
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_address_groups(remote: str, group: str) -> None:
    assert address_group(remote) == group
