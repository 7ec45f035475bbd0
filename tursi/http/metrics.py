"""Request counters and a latency histogram kept by a worker, rendered in the Prometheus text format.

Routes are labelled by the matched route's template, never by the request's path: a client picks the
path, so a path label would let anyone grow the page without bound or write lines into it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "unmatched"  # the one label for every request no route matched (404, 405)


def route_label(request: web.Request) -> str:
    """The template of the route ``request`` matched (e.g. ``/v1/embeddings``), else ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def label_value(value: object) -> str:
    """``value`` escaped for a label in the Prometheus text format: backslash, double quote, newline."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # last: +Inf
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_s += seconds

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        for bound, n in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
        lines += [f"{name}_sum{{{labels}}} {self.total_s:.6f}", f"{name}_count{{{labels}}} {running}"]
        return lines


@dataclass
class Metrics:
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    latency: dict[str, Histogram] = field(default_factory=dict)
    tokens: int = 0
    generated_tokens: int = 0  # counted by the model thread, token by token, even for abandoned requests
    in_flight: int = 0  # inference requests being served now (tursid never unloads a busy deployment)

    def observe(self, route: str, status: int, seconds: float, tokens: int = 0) -> None:
        self.requests[(route, status)] += 1
        self.tokens += tokens
        self.latency.setdefault(route, Histogram()).observe(seconds)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def render(
        self,
        deployment: str,
        queue_waiting: int = 0,
        rate_limited: int = 0,
        batches: tuple[int, int] | None = None,
        slots: dict[str, int] | None = None,
    ) -> str:
        dep = f'deployment="{label_value(deployment)}"'
        lines = [
            "# HELP tursi_requests_total Inference requests handled, by route and status.",
            "# TYPE tursi_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            route_status = f'route="{label_value(route)}",status="{status}"'
            lines.append(f"tursi_requests_total{{{dep},{route_status}}} {n}")
        lines += [
            "# HELP tursi_request_duration_seconds Time spent serving inference requests, by route.",
            "# TYPE tursi_request_duration_seconds histogram",
        ]
        for route, hist in sorted(self.latency.items()):
            lines += hist.render("tursi_request_duration_seconds", f'{dep},route="{label_value(route)}"')
        for name, kind, help_text, value in (
            ("tursi_tokens_total", "counter", "Tokens processed (embedding inputs, completions).", self.tokens),
            ("tursi_generated_tokens_total", "counter", "Tokens produced by the model.", self.generated_tokens),
            ("tursi_rate_limited_total", "counter", "Requests refused with 429 by the rate limiter.", rate_limited),
            ("tursi_queue_waiting", "gauge", "Requests waiting for the model.", queue_waiting),
            ("tursi_requests_in_flight", "gauge", "Inference requests being served now.", self.in_flight),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{dep}}} {value}"]
        if batches is not None:
            for name, help_text, value in (
                ("tursi_batches_total", "Model runs made by the dynamic batcher.", batches[0]),
                ("tursi_batched_requests_total", "Requests served through those runs.", batches[1]),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name}{{{dep}}} {value}"]
        if slots:
            lines += _slot_lines(dep, slots)
        return "\n".join(lines) + "\n"


SLOT_METRICS = (  # key in LlamaRuntime.slots(), metric, kind, help
    ("slots", "tursi_slots", "gauge", "LLM slots (requests decoded together)."),
    ("slots_busy", "tursi_slots_busy", "gauge", "LLM slots serving a request now."),
    ("prompt_tokens_reused", "tursi_prompt_tokens_reused_total", "counter", "Prompt tokens found in the KV cache."),
    ("prompt_tokens_decoded", "tursi_prompt_tokens_decoded_total", "counter", "Prompt tokens the model read."),
)


def _slot_lines(dep: str, slots: dict[str, int]) -> list[str]:
    lines: list[str] = []
    for key, name, kind, help_text in SLOT_METRICS:
        if key in slots:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{dep}}} {slots[key]}"]
    return lines
