"""Request counters kept by a worker and rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    tokens: int = 0
    generated_tokens: int = 0  # counted by the model thread, token by token, even for abandoned requests
    latency_sum_s: float = 0.0
    latency_count: int = 0

    def observe(self, route: str, status: int, seconds: float, tokens: int = 0) -> None:
        self.requests[(route, status)] += 1
        self.tokens += tokens
        self.latency_sum_s += seconds
        self.latency_count += 1

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def render(self, deployment: str, queue_waiting: int = 0, rate_limited: int = 0) -> str:
        lines = [
            "# HELP tursi_requests_total Inference requests handled, by route and status.",
            "# TYPE tursi_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'tursi_requests_total{{deployment="{deployment}",route="{route}",status="{status}"}} {n}')
        lines += [
            "# HELP tursi_tokens_total Tokens processed (embedding inputs, generated completions).",
            "# TYPE tursi_tokens_total counter",
            f'tursi_tokens_total{{deployment="{deployment}"}} {self.tokens}',
            "# HELP tursi_request_duration_seconds Time spent serving inference requests.",
            "# TYPE tursi_request_duration_seconds summary",
            f'tursi_request_duration_seconds_sum{{deployment="{deployment}"}} {self.latency_sum_s:.6f}',
            f'tursi_request_duration_seconds_count{{deployment="{deployment}"}} {self.latency_count}',
            "# HELP tursi_generated_tokens_total Tokens produced by the model.",
            "# TYPE tursi_generated_tokens_total counter",
            f'tursi_generated_tokens_total{{deployment="{deployment}"}} {self.generated_tokens}',
            "# HELP tursi_rate_limited_total Requests refused with 429 by the rate limiter.",
            "# TYPE tursi_rate_limited_total counter",
            f'tursi_rate_limited_total{{deployment="{deployment}"}} {rate_limited}',
            "# HELP tursi_queue_waiting Requests waiting for the model.",
            "# TYPE tursi_queue_waiting gauge",
            f'tursi_queue_waiting{{deployment="{deployment}"}} {queue_waiting}',
        ]
        return "\n".join(lines) + "\n"


def parse_requests_total(text: str) -> int:
    """Sum of tursi_requests_total samples in a Prometheus text page."""
    total = 0
    for line in text.splitlines():
        if line.startswith("tursi_requests_total"):
            try:
                total += int(float(line.rsplit(" ", 1)[1]))
            except (IndexError, ValueError):
                continue
    return total
