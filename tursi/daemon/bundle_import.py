"""Importing a `.tursi` bundle that was spooled to disk: verify all of it, check it fits this machine, then
unpack and publish it under a key of the loaded namespace (never one a conversion would compute); a key already
here must hold the same files. The `load` handler in ``bundles.py`` receives the upload and answers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters import cache
from tursi.core import failpoints
from tursi.core.errors import ArtifactConflict, DiskFull, TargetMismatch, UnsafeBundle
from tursi.core.fit import misfits
from tursi.daemon.artifacts import origin_path
from tursi.daemon.context import Daemon

if TYPE_CHECKING:
    from tursi.formats import bundle  # imported where used: tarfile stays out of an idle tursid


async def import_bundle(daemon: Daemon, spool: Path, limit: bundle.Caps, *, force: bool) -> dict[str, Any]:
    """The spooled bundle verified and published (or found here already); what `load` answers. A bundle built for
    other hardware is refused (409) unless ``force``, and then its reasons come back as warnings."""
    from tursi.formats import bundle

    root = daemon.settings.artifacts_dir
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(None, bundle.verify, spool, limit)
    reasons = misfits(info.target, daemon.hardware, info.size_bytes)
    if reasons and not force:
        raise TargetMismatch("; ".join(reasons), target=info.target.get("name"), hint="--force loads it anyway")
    key = bundle.local_key(info.key)
    with disk_full_is_507(root):
        present = await loop.run_in_executor(None, _import, spool, info, root, key)
    return _record(daemon, info, key, present, reasons)


@contextlib.contextmanager
def disk_full_is_507(root: Path) -> Iterator[None]:
    """A write under ``root`` that finds the disk full answers 507 with a hint, not a 500."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(f"no space left in {root} for the bundle", hint="tursi prune frees unused artifacts") from e
        raise


def need_space(root: Path, needed: int) -> None:
    """507 before a byte is written when the spool and the unpacked copy (both on this filesystem) cannot fit."""
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DiskFull(
            f"no space left in {root} for the bundle: it needs {needed} bytes (its upload and its unpacked copy), "
            f"{free} are free",
            hint="tursi prune frees unused artifacts",
        )


def _record(daemon: Daemon, info: bundle.BundleInfo, key: str, present: bool, reasons: list[str]) -> dict[str, Any]:
    manifest = info.manifest
    plan = manifest["plan"]
    quantization = manifest.get("quantization") or plan["quantization"]
    root = daemon.settings.artifacts_dir
    reference = manifest.get("source", {}).get("reference", info.name)
    daemon.store.record_artifact(key, str(root / key), reference, plan["format"], quantization, info.size_bytes)
    daemon.store.add_event(None, "loaded", f"bundle {info.name} ({info.key[:12]}) -> {key[:12]}")
    return {
        "key": key,
        "bundle_key": info.key,
        "name": info.name,
        "target": info.target.get("name"),
        "format": plan["format"],
        "quantization": quantization,
        "size_bytes": info.size_bytes,
        "already_present": present,
        "warnings": reasons,
    }


def _import(spool: Path, info: bundle.BundleInfo, root: Path, key: str) -> bool:
    """Unpack under ``key`` unless it is here already (True); either way the files under ``key`` are the bundle's."""
    final = root / key
    if final.exists() or final.is_symlink():
        _same_files(final, info, key)
        return True
    need_space(root, info.size_bytes)
    if not _unpack(spool, info, root, key):  # another load published this key first: it must hold the same files
        _same_files(final, info, key)
    origin = origin_path(root, key)
    origin.parent.mkdir(exist_ok=True)
    cache.write_json_atomic(origin, {"bundle_key": info.key, "name": info.name, "target": info.target})
    return False


def _same_files(final: Path, info: bundle.BundleInfo, key: str) -> None:
    from tursi.formats import bundle

    try:
        here = bundle.describe(final) if final.is_dir() and not final.is_symlink() else None
    except UnsafeBundle:
        here = None
    if here != info.files:
        raise ArtifactConflict(
            f"artifact {key[:12]} (bundle key {info.key[:12]}) is already here with other files; nothing was loaded",
            key=key,
            hint=f"tursi rmi {key[:12]} removes the one that is here",
        )


def _unpack(spool: Path, info: bundle.BundleInfo, root: Path, key: str) -> bool:
    """Extract into staging, check, publish; False when another run had already published ``key``."""
    from tursi.formats import bundle, onnx_external

    staging = cache.make_staging(root, key)
    try:
        bundle.extract(spool, info, staging)
        onnx_external.check_folder(staging)  # no ONNX tensor may read from outside the artifact
        failpoints.hit("load.before_publish")
        ours = staging.stat().st_ino
        return cache.publish(staging, root, key).stat().st_ino == ours
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
