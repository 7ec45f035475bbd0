"""Keep-alive durations as Ollama and Docker Model Runner write them: ``5m``, ``30s``, ``1h30m``, a number of
seconds, ``0`` (unload after each reply), ``-1`` or ``forever`` (never unload)."""

from __future__ import annotations

import re

FOREVER = "forever"
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_S = 366 * 24 * 3600.0


def keep_alive_seconds(text: str) -> float | None:
    """Seconds an idle deployment stays loaded; None for forever. ValueError for anything else."""
    text = text.strip().lower()
    if text in (FOREVER, "inf"):
        return None
    if text.startswith("-") and len(text) > 1:
        keep_alive_seconds(text[1:])  # a negative duration (Ollama's -1, -5m) keeps the model loaded
        return None
    plain = _number(text)
    if plain is not None:
        seconds = plain
    else:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"{text!r} is not a duration")
    if seconds > MAX_S:
        raise ValueError(f"{text!r} is longer than a year: use 'forever'")
    return seconds


def normalize_keep_alive(text: str) -> str:
    """The canonical form a deployment stores: ``forever`` or seconds (``300s``)."""
    seconds = keep_alive_seconds(text)
    return FOREVER if seconds is None else f"{seconds:g}s"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value >= 0 else None  # NaN and negatives are not numbers of seconds here
