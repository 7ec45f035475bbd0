"""Health-check policy like Docker's: interval, timeout, retries and start period, parsed from a spec."""

from __future__ import annotations

from dataclasses import dataclass

from tursi.core.errors import InvalidSpec


@dataclass(frozen=True)
class HealthCheck:
    interval_s: float = 10.0
    timeout_s: float = 2.0
    retries: int = 3
    start_period_s: float = 0.0

    @classmethod
    def from_options(cls, opts: dict[str, object]) -> HealthCheck:
        def num(key: str, default: float, lo: float) -> float:
            value = opts.get(key)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, int | float) or value < lo:
                raise InvalidSpec(f"--{key.replace('_', '-')} must be a number >= {lo}", param=key)
            return float(value)

        return cls(
            num("health_interval", 10.0, 0.1),
            num("health_timeout", 2.0, 0.1),
            int(num("health_retries", 3, 1)),
            num("health_start_period", 0.0, 0.0),
        )
