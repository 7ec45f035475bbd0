"""Content-addressed artifact cache: $TURSI_HOME/artifacts/<key>/ with manifest.json.

An artifact is built in a temporary sibling directory and renamed into place, so a killed
conversion leaves nothing half-made under its key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def artifact_key(source_digest: str, plan: dict[str, Any], tool_versions: dict[str, str]) -> str:
    blob = json.dumps({"source": source_digest, "plan": plan, "tools": tool_versions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def lookup(artifacts_dir: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a complete cached artifact, or None."""
    manifest = artifacts_dir / key / MANIFEST
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def make_staging(artifacts_dir: Path, key: str) -> Path:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=artifacts_dir))


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(staging: Path, artifacts_dir: Path, key: str) -> Path:
    """Move a finished staging directory to its key. If another run won the race, keep theirs."""
    final = artifacts_dir / key
    for f in staging.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    try:
        os.rename(staging, final)
    except OSError:
        if lookup(artifacts_dir, key) is None:
            raise
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(artifacts_dir)
    return final


def remove_stale_staging(artifacts_dir: Path) -> int:
    """Delete leftovers of killed conversions (called by tursid at start)."""
    n = 0
    if artifacts_dir.is_dir():
        for d in artifacts_dir.glob(".tmp-*"):  # staging directories and spooled uploads
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            n += 1
    return n


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
