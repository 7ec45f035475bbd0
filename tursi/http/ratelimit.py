"""Token buckets on a monotonic clock: per deployment, one bucket per client (API key, else address).

The table of buckets is bounded (MAX_CLIENTS) without letting new clients push out the state of others:
a bucket that has refilled to its burst is dropped (forgetting it changes nothing: a new bucket is the
same), and when every bucket in the table is still refilling (so every client in it was seen within one
refill period), a new client draws on one shared overflow bucket instead of evicting anyone. Evicting the
least recently seen client instead would hand a limited client a fresh bucket whenever someone brought
enough addresses, which is a way around the limit; refusing new clients outright would lock them out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tursi.core.access import RateSpec

MAX_CLIENTS = 10_000  # buckets kept; beyond it, new clients share one overflow bucket
OVERFLOW = "overflow"


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until one request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        h = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after_s)
        return h


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> tuple[bool, float]:
        """(allowed, tokens left after this request)."""
        now = self.clock()
        self.tokens = self.level(now)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, self.tokens
        return False, self.tokens

    def level(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.updated) * self.rate)


class RateLimiter:
    def __init__(
        self, spec: RateSpec, clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS
    ) -> None:
        self.spec, self.clock = spec, clock
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()  # least recently seen first
        self.overflow = TokenBucket(spec.rate_per_s, spec.burst, clock)
        self.max_clients = max_clients
        self.limited = 0

    def _bucket(self, client: str) -> TokenBucket:
        bucket = self.buckets.get(client)
        if bucket is not None:
            self.buckets.move_to_end(client)
            return bucket
        now = self.clock()
        while self.buckets and len(self.buckets) >= self.max_clients:
            oldest = next(iter(self.buckets.values()))
            if oldest.level(now) < oldest.burst:  # every client in the table is still refilling
                return self.overflow
            self.buckets.popitem(last=False)  # refilled: forgetting it loses nothing
        bucket = self.buckets[client] = TokenBucket(self.spec.rate_per_s, self.spec.burst, self.clock)
        return bucket

    def check(self, client: str) -> Decision:
        bucket = self._bucket(client)
        allowed, left = bucket.take()
        rate = self.spec.rate_per_s
        reset = math.ceil((self.spec.burst - left) / rate)
        retry = 0 if allowed else max(1, math.ceil((1 - left) / rate))
        if not allowed:
            self.limited += 1
        return Decision(allowed, self.spec.burst, int(left), reset, retry)
