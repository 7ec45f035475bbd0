"""Content-addressed artifact cache: $TURSI_HOME/artifacts/<key>/ with manifest.json.

An artifact is built in a temporary sibling directory and renamed into place, so a killed
conversion leaves nothing half-made under its key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING")  # a source's license, copied into its artifact

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 4 << 20


def artifact_key(source_digest: str, plan: dict[str, Any], tool_versions: dict[str, str]) -> str:
    blob = json.dumps({"source": source_digest, "plan": plan, "tools": tool_versions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def lookup(artifacts_dir: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a complete, well-formed cached artifact, or None (absent or damaged)."""
    manifest, problem = read_manifest(artifacts_dir, key)
    return manifest if problem is None else None


def read_manifest(artifacts_dir: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) for a usable artifact; (None, why) when the entry is missing or damaged."""
    path = artifacts_dir / key / MANIFEST
    try:
        if path.is_symlink() or not path.is_file():
            return None, "no manifest.json"
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return None, f"manifest.json is over {MAX_MANIFEST_BYTES} bytes"
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"manifest.json cannot be read: {type(e).__name__}"
    except RecursionError:
        return None, "manifest.json nests too deeply"
    problem = manifest_problem(manifest)
    return (None, problem) if problem else (manifest, None)


# -- the manifest schema: the type of every field any part of Tursi reads ------------------------------------

RUNTIMES = {"onnx": "onnxruntime", "gguf": "llama"}
TASKS = ("embeddings", "classification", "fill-mask", "rerank", "chat")
_NUMBER = (int, float)
_TOP = {
    "quantization": (str, type(None)),
    "size_bytes": int,
    "created_at": _NUMBER,
    "conversion_s": _NUMBER,
    "key": str,
    "source": dict,
    "files": dict,
    "tools": dict,
}
_PLAN = {"task": str, "format": str, "quantization": str, "runtime": str}  # required
_PLAN_OPTIONAL = {"converter": str, "reasons": dict, "params": dict}
_SOURCE = {"reference": str, "path": str, "digest": str, "size_bytes": int}


def _type_problem(where: str, obj: dict[str, Any], fields: dict[str, Any], required: bool = False) -> str | None:
    for name, types in fields.items():
        if name not in obj:
            if required:
                return f"{where}{name} is missing"
            continue
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"{where}{name} has the wrong type ({type(value).__name__})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where}{name} is not a finite number"
    return None


def _maps_problem(manifest: dict[str, Any], plan: dict[str, Any]) -> str | None:
    maps = (("files", manifest.get("files")), ("tools", manifest.get("tools")), ("plan.reasons", plan.get("reasons")))
    for where, value in maps:
        if value is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return f"{where} must map names to strings"
    hardware = plan.get("params", {}).get("hardware_target")
    if hardware is not None and not isinstance(hardware, str):
        return "plan.params.hardware_target must be a string"
    return None


def _plan_problem(manifest: dict[str, Any], plan: dict[str, Any]) -> str | None:
    if plan["format"] not in RUNTIMES or plan["runtime"] != RUNTIMES[plan["format"]]:
        return "plan.format and plan.runtime must be onnx and onnxruntime, or gguf and llama"
    if plan["task"] not in TASKS:
        return f"plan.task must be one of {', '.join(TASKS)}"
    if plan["format"] == "gguf" and "model" not in manifest.get("files", {}):
        return "a gguf artifact names its model file in files.model"
    return None


def manifest_problem(manifest: Any) -> str | None:
    """Why ``manifest`` cannot be used (one line), or None. The paths in 'files' are checked by the caller, which
    knows the folder (bundle import, runtime load)."""
    if not isinstance(manifest, dict):
        return "manifest.json is not a JSON object"
    plan = manifest.get("plan")
    if not isinstance(plan, dict):
        return "plan is missing or not an object"
    return (
        _type_problem("", manifest, _TOP)
        or _type_problem("plan.", plan, _PLAN, required=True)
        or _type_problem("plan.", plan, _PLAN_OPTIONAL)
        or _type_problem("source.", manifest.get("source", {}), _SOURCE)
        or _maps_problem(manifest, plan)
        or _plan_problem(manifest, plan)
    )


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
        if lookup(artifacts_dir, key) is not None:  # a complete one is there: keep it
            shutil.rmtree(staging, ignore_errors=True)
        elif final.is_dir() and not final.is_symlink():  # a damaged entry: this fresh one replaces it
            aside = Path(tempfile.mkdtemp(prefix=f".tmp-damaged-{key[:12]}-", dir=artifacts_dir))
            os.rename(final, aside / "old")
            os.rename(staging, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            raise
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
    """Bytes of the regular files under ``path`` (files that vanish while we count are skipped)."""
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except OSError:
            continue
    return total


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
