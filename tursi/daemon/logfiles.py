"""Deployment log files: reading with times (--since, --timestamps) and size-based rotation.

Workers write straight into their log file (opened O_APPEND by tursid), so a worker keeps logging
while tursid is down. Rotation therefore copies the file to ``.1`` and truncates it in place
(copytruncate): the worker's appends land at the new end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from tursi.core.errors import InvalidSpec

log = logging.getLogger(__name__)

# "2026-11-26T13:29:50+0000 [tursid] ..." (lifecycle) and "2026-11-26 13:29:50,843 INFO ..." (worker logging)
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[,.]\d+)?([+-]\d{4}|Z)?")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float) -> float:
    """A duration ago (10m, 2h, 30s, 1d), an RFC 3339 time, or Unix seconds -> Unix seconds."""
    value = value.strip()
    m = _DURATION.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    with contextlib.suppress(ValueError):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSpec(
            f"--since {value!r}: use a duration (10m, 2h) or a time (2026-11-26T13:00:00Z)", param="since"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _stamp(line: str) -> float | None:
    m = _STAMP.match(line)
    if not m:
        return None
    tz = m.group(3) or "+0000"
    tz = "+0000" if tz == "Z" else tz
    try:
        return datetime.strptime(f"{m.group(1)} {m.group(2)} {tz}", "%Y-%m-%d %H:%M:%S %z").timestamp()
    except ValueError:
        return None


def log_path(logs_dir: Path, name: str) -> Path:
    """A deployment's log file (its rotations sit beside it as ``.1``, ``.2``, ...)."""
    return logs_dir / f"{name}.log"


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of one file (not its rotations), without their newlines."""
    if not path.is_file():
        return []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in deque(fh, maxlen=n)]


def files_oldest_first(path: Path, keep: int) -> list[Path]:
    rotated = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)]
    return [p for p in [*rotated, path] if p.is_file()]


def read_lines(path: Path, *, keep: int, tail: int, since: float | None, timestamps: bool) -> list[str]:
    """Lines of the log and its rotations; a line without a time of its own takes the one before it."""
    out: list[tuple[float, str]] = []
    last = 0.0
    for f in files_oldest_first(path, keep):
        with f.open("r", encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                line = raw.rstrip("\n")
                last = _stamp(line) or last
                out.append((last, line))
    if since is not None:
        out = [(t, line) for t, line in out if t >= since]
    if tail >= 0:
        out = out[-tail:] if tail else []
    if timestamps:
        return [f"{_rfc3339(t)} {line}" for t, line in out]
    return [line for _, line in out]


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def rotate(path: Path, max_bytes: int, keep: int) -> bool:
    """copytruncate once the file passes max_bytes; keeps ``keep`` old files."""
    if keep < 1 or not path.is_file() or path.stat().st_size <= max_bytes:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as fh:
        fh.truncate(0)
    return True


def remove_all(path: Path, keep: int) -> None:
    for f in files_oldest_first(path, keep):
        f.unlink(missing_ok=True)


async def rotation_loop(
    logs_dir: Path, max_bytes: int, keep: int, interval_s: float, also: tuple[Path, ...] = ()
) -> None:
    """Rotates every deployment log, and ``also`` (tursid's own log when the CLI started it), forever."""
    while True:
        for f in [*logs_dir.glob("*.log"), *also]:
            try:
                if rotate(f, max_bytes, keep):
                    log.info("rotated %s", f.name)
            except OSError:
                log.exception("rotating %s failed", f)
        await asyncio.sleep(interval_s)


def now() -> float:
    return time.time()
