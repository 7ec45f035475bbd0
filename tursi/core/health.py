"""Health-check policy like Docker's: interval, timeout, retries and start period (``DeploymentSpec`` parses them;
its defaults are these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthCheck:
    interval_s: float = 10.0
    timeout_s: float = 2.0
    retries: int = 3
    start_period_s: float = 0.0
