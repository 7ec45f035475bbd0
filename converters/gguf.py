"""GGUF artifacts: import a file as is, or quantize an F16/BF16/F32 GGUF with llama.cpp."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_FILE = "model.gguf"
Progress = Callable[[str, str], None]

# llama.cpp's LLAMA_FTYPE_MOSTLY_* values
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "F16": 1}


FICLONE = 0x40049409  # Linux ioctl: share the source's blocks copy-on-write (btrfs, XFS, bcachefs)


def import_file(source: Path, out: Path, expected_digest: str | None = None) -> dict[str, Any]:
    """Place the file in the artifact: a reflink where the filesystem has them, else a copy.

    Never a hard link: the artifact's key names the source's content at import time, and a hard link would let an
    in-place edit of the source change the cached artifact under that old key. tursid hashed the source before
    this process started; the copy is hashed again (``expected_digest``, as ModelRef.digest writes it), so a source
    edited in between is refused instead of being cached under the old key.
    """
    dest = out / MODEL_FILE
    how = "reflink" if _reflink(source, dest) else "copy"
    if how == "copy":
        shutil.copyfile(source, dest)
    if expected_digest is not None and file_digest(dest, source.name) != expected_digest:
        raise ValueError(f"{source} changed while it was imported; run up again")
    return {"files": {"model": MODEL_FILE}, "import": how}


def file_digest(path: Path, name: str) -> str:
    """sha256 over name + NUL + content: how tursi.core.refs.ModelRef.digest hashes a single-file model."""
    h = hashlib.sha256(name.encode() + b"\0")
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _reflink(source: Path, dest: Path) -> bool:
    """A copy-on-write clone of ``source`` at ``dest``; False (and no ``dest``) where the filesystem has none."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return False
    try:
        with source.open("rb") as src, dest.open("wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        dest.unlink(missing_ok=True)
        return False


def quantize(source: Path, dest: Path, target: str, threads: int = 0) -> float:
    """llama.cpp quantize through llama-cpp-python; returns seconds taken."""
    import llama_cpp

    if target not in FTYPES:
        raise ValueError(f"no llama.cpp file type for {target}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[target]
    params.nthread = threads or (os.cpu_count() or 1)
    t0 = time.monotonic()
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), params)
    if rc != 0 or not dest.is_file():
        raise RuntimeError(f"llama.cpp quantize to {target} failed (status {rc})")
    return time.monotonic() - t0


def requantize(source: Path, out: Path, plan: dict[str, Any], progress: Progress) -> dict[str, Any]:
    target = plan["params"]["target"]
    progress("quantize", f"quantizing {source.name} to {target} with llama.cpp")
    seconds = quantize(source, out / MODEL_FILE, target)
    return {"files": {"model": MODEL_FILE}, "quantize_s": round(seconds, 2)}
