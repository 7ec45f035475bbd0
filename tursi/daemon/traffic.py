"""Per-deployment traffic figures from successive /metrics pages: rates, latency quantiles, 429s."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tursi.http.metrics import BUCKETS

log = logging.getLogger(__name__)

_QUOTED = r'"(?:[^"\\\n]|\\.)*"'  # a label value: escapes are \\, \" and \n
_LINE = re.compile(rf"^([a-zA-Z_:][\w:]*)(?:\{{((?:[^\"}}]|{_QUOTED})*)\}})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$")
_LABEL = re.compile(rf"\s*([a-zA-Z_]\w*)\s*=\s*({_QUOTED})\s*(?:,|$)")


@dataclass
class Counters:
    requests: float = 0.0
    tokens: float = 0.0
    generated: float = 0.0
    limited: float = 0.0
    in_flight: float = 0.0
    buckets: dict[str, float] = field(default_factory=dict)  # le -> cumulative count, summed over routes


def _sample(line: str) -> tuple[str, dict[str, str], float] | None:
    """(name, labels, value) of one sample line of the Prometheus text format; None for anything else."""
    m = _LINE.match(line)
    if not m:
        return None
    try:
        value = float(m.group(3))
    except ValueError:
        return None
    labels: dict[str, str] = {}
    rest = m.group(2) or ""
    while rest.strip():
        lm = _LABEL.match(rest)
        if not lm:
            return None
        raw = lm.group(2)[1:-1]
        labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), raw)
        rest = rest[lm.end() :]
    return (m.group(1), labels, value) if math.isfinite(value) else None


def parse_metrics(text: str) -> Counters:
    """The counters tursid follows from a worker's /metrics page; a line that does not parse is skipped."""
    c = Counters()
    skipped = 0
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        sample = _sample(line)
        if sample is None:
            skipped += 1
            continue
        name, labels, value = sample
        if name == "tursi_requests_total":
            c.requests += value
        elif name == "tursi_tokens_total":
            c.tokens = value
        elif name == "tursi_generated_tokens_total":
            c.generated = value
        elif name == "tursi_rate_limited_total":
            c.limited = value
        elif name == "tursi_requests_in_flight":
            c.in_flight = value
        elif name == "tursi_request_duration_seconds_bucket":
            c.buckets[labels.get("le", "")] = c.buckets.get(labels.get("le", ""), 0.0) + value
    if skipped:
        log.debug("metrics page: skipped %d line(s) that do not parse", skipped)
    return c


def quantile(before: dict[str, float], after: dict[str, float], q: float) -> float | None:
    """Upper bound (seconds) of the histogram bucket holding the q-quantile of the interval's requests."""
    bounds = [str(b) for b in BUCKETS] + ["+Inf"]
    deltas = [after.get(b, 0.0) - before.get(b, 0.0) for b in bounds]
    total = deltas[-1]
    if total <= 0:
        return None
    for bound, cumulative in zip([*BUCKETS, float("inf")], deltas, strict=True):
        if cumulative >= q * total:
            return bound
    return None


def rates(before: Counters | None, after: Counters, seconds: float) -> dict[str, Any]:
    if before is None or seconds <= 0:
        return {
            "requests_per_s": None,
            "tokens_per_s": None,
            "p50_s": None,
            "p95_s": None,
            "rate_limited": int(after.limited),
            "requests": int(after.requests),
            "in_flight": int(after.in_flight),
        }
    tokens = (after.tokens - before.tokens) + (after.generated - before.generated)
    return {
        "requests": int(after.requests),
        "in_flight": int(after.in_flight),
        "requests_per_s": round((after.requests - before.requests) / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "p50_s": quantile(before.buckets, after.buckets, 0.50),
        "p95_s": quantile(before.buckets, after.buckets, 0.95),
        "rate_limited": int(after.limited),
    }
