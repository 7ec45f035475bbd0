"""The int8 sensitivity search's answers, kept per fp32 model: building the same encoder again (another target,
another name, a fresh TURSI_HOME) reuses the choice instead of spending half a minute on it.

The key covers everything the answer depends on: the fp32 ONNX bytes, the all-int8 model's bytes (quantizer
version and settings), the calibration texts and the targets. Entries live under ``$XDG_CACHE_HOME/tursi`` (default
``~/.cache/tursi``), beside the runtime builds; deleting them only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

VERSION = 1  # of the search and of the section it writes


def cache_dir() -> Path:
    from tursi.core.settings import cache_home

    return cache_home(os.environ) / "int8-sensitivity"


def key(fp32: Path, int8: Path, texts: list[str], targets: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps({"v": VERSION, "texts": texts, "targets": targets}, sort_keys=True).encode())
    for model in (fp32, int8):
        for part in sorted(model.parent.glob(f"{model.name}*")):  # model.onnx and any external data beside it
            h.update(part.name.encode())
            with part.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:32]


def load(k: str) -> dict[str, Any] | None:
    """The section stored under ``k``, or None when absent or unreadable (then the search runs again)."""
    try:
        section = json.loads((cache_dir() / f"{k}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(section, dict) and isinstance(section.get("nodes_to_exclude"), list)
    return section if ok and all(isinstance(n, str) for n in section["nodes_to_exclude"]) else None


def store(k: str, section: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written is not an error of the conversion."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(section, f)
        os.replace(tmp, folder / f"{k}.json")
    except OSError:
        pass
