"""The only module that prints: tables like `docker ps`, sizes, durations, progress and errors."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI) and the bidi overrides that reorder
# what a terminal shows: text from the daemon, manifests and bundles must not drive the user's terminal.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
CLEAR_SCREEN = "\x1b[H\x1b[2J"
_LINES = threading.Lock()  # whole lines when several log streams print at once (`compose logs -f`)


def clean(text: str) -> str:
    """``text`` with terminal control characters removed."""
    return _CONTROLS.sub("", text)


def out(text: str = "", *, err: bool = False, clear: bool = False) -> None:
    """Print one line (control characters removed); ``clear`` first clears a terminal (our own escape, not data)."""
    stream = sys.stderr if err else sys.stdout
    stream.write((CLEAR_SCREEN if clear else "") + clean(text) + "\n")
    stream.flush()


def write_raw(data: bytes) -> None:
    """Log bytes as they are, less terminal control characters (a request line in a log must not drive a TTY)."""
    text = data.decode("utf-8", "surrogateescape")
    sys.stdout.buffer.write(clean(text).encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()


def write_prefixed(prefix: str, data: bytes) -> None:
    """One log line after ``prefix`` (``chat  | ``), kept whole when other threads print lines too."""
    with _LINES:
        write_raw(prefix.encode("utf-8") + data)


def as_json(value: Any) -> None:
    out(json.dumps(value, indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[clean(str(c)) for c in headers]] + [["" if c is None else clean(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


def human_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    if s < 3600:
        m = s // 60
        return f"{m} minute{'s' if m != 1 else ''}"
    if s < 86400:
        h = s // 3600
        return f"{h} hour{'s' if h != 1 else ''}"
    d = s // 86400
    return f"{d} day{'s' if d != 1 else ''}"


def error(message: str, hint: str | None = None, extra_lines: Sequence[str] = ()) -> None:
    out(f"Error: {message}", err=True)
    for line in extra_lines:
        out(f"  | {line}", err=True)
    if hint:
        out(f"Hint: {hint}", err=True)


class Progress:
    """Stage lines with elapsed time; on a terminal the current line ticks while work goes on."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.current: str | None = None
        self.suffix = ""
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        frames = "|/-\\"
        i = 0
        while not self._stop.wait(0.2):
            with self._lock:
                if self.current:
                    elapsed = time.monotonic() - self.started
                    suffix = f" {self.suffix}" if self.suffix else ""
                    self.stream.write(f"\r{frames[i % 4]} {self.current}{suffix} ({elapsed:.1f}s)\x1b[K")
                    self.stream.flush()
            i += 1

    def stage(self, text: str) -> None:
        with self._lock:
            self._finish_locked()
            self.current, self.started, self.suffix = clean(text), time.monotonic(), ""
            if not self.tty:
                self.stream.write(f"{self.current} ...\n")
                self.stream.flush()

    def note(self, text: str, *, plain: bool = False) -> None:
        """Detail of the current stage (``[120/193]``): ticks on a terminal; a plain line elsewhere when ``plain``."""
        with self._lock:
            self.suffix = clean(text)
            if plain and not self.tty and self.current:
                self.stream.write(f"{self.current} {self.suffix}\n")
                self.stream.flush()

    def _finish_locked(self, mark: str = "done") -> None:
        if self.current and self.tty:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r{'✔' if mark == 'done' else '✘'} {self.current} ({mark} in {elapsed:.1f}s)\x1b[K\n")
            self.stream.flush()
        self.current = None

    def close(self, ok: bool = True) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        with self._lock:
            self._finish_locked("done" if ok else "failed")


class Transfer:
    """Byte progress for uploads and downloads: a ticking line on a terminal, start and end lines otherwise."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.label, self.total, self.done = clean(label), total, 0
        self.started = self.last = time.monotonic()
        if not self.tty:
            self.stream.write(f"{self.label} ({human_size(total) if total >= 0 else 'unknown size'}) ...\n")
            self.stream.flush()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last >= 0.1:
            self.last = now
            pct = f" {100 * self.done / self.total:5.1f}%" if self.total > 0 else ""
            self.stream.write(f"\r{self.label} {human_size(self.done)} / {human_size(self.total)}{pct}\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = human_size(self.done / elapsed)
        line = f"{self.label} {human_size(self.done)} in {elapsed:.1f}s ({rate}/s)"
        self.stream.write(f"\r✔ {line}\x1b[K\n" if self.tty else f"{line}\n")
        self.stream.flush()


class CountingReader:
    """Wraps a binary file so reads report progress (http.client sends a file body by read())."""

    def __init__(self, fh: Any, transfer: Transfer) -> None:
        self.fh, self.transfer = fh, transfer

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.transfer.advance(len(data))
        return data
