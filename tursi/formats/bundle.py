"""`.tursi` bundles: one plain tar holding a built artifact, for moving models between machines.

Layout: ``tursi-bundle.json`` first (format version, artifact key, suggested name, the target hardware
profile and the size and sha256 of every file), then ``artifact/<path>`` for each file, regular files only.

Import reads the whole archive once to check it (member types, paths, sizes, caps, checksums) before a
single byte lands in the artifact cache, then unpacks it into a staging directory and re-checks every
digest while writing. Standard library only: tursid on a device has no ML libraries to lean on.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from converters import cache
from tursi.core.errors import BundleTooLarge, DigestMismatch, UnsafeBundle
from tursi.core.names import NAME_RULE, is_valid_name
from tursi.formats.tar_scan import scan_headers

INDEX = "tursi-bundle.json"
PREFIX = "artifact/"
VERSION = 1
KEY_RE = re.compile(r"^[0-9a-f]{32}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
MAX_INDEX_BYTES = 1 << 20
MAX_MANIFEST_BYTES = cache.MAX_MANIFEST_BYTES


@dataclass(frozen=True)
class Caps:
    total_bytes: int = 64 << 30  # the whole archive
    file_bytes: int = 32 << 30  # any one file
    files: int = 4096


@dataclass(frozen=True)
class BundleInfo:
    key: str
    name: str
    target: dict[str, Any]
    files: dict[str, dict[str, Any]]  # relative path -> {"size", "sha256"}
    manifest: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())


def local_key(bundle_key: str) -> str:
    """Where a loaded bundle lives in the cache. Conversion keys hash (source, plan, tools); this hashes the
    bundle's own key in a namespace of its own, so a bundle can never name an artifact a conversion would reuse."""
    return hashlib.sha256(f"tursi-bundle:{bundle_key}".encode()).hexdigest()[:32]


# -- writing -----------------------------------------------------------------------------------


def describe(artifact_dir: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under an artifact directory (links and other oddities refused)."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(artifact_dir.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise UnsafeBundle(f"{path}: only regular files can go into a bundle")
        if path.is_dir():
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):  # noqa: B023 - fh is bound per iteration
                h.update(chunk)
        files[path.relative_to(artifact_dir).as_posix()] = {"size": path.stat().st_size, "sha256": h.hexdigest()}
    return files


def make_index(key: str, name: str, target: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from tursi import __version__

    return {
        "bundle_version": VERSION,
        "key": key,
        "name": name,
        "target": target,
        "files": [{"path": p, **meta} for p, meta in sorted(files.items())],
        "created_at": time.time(),
        "tursi_version": __version__,
    }


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, int(time.time()), tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


class BundleWriter:
    """A tar stream of known length, produced chunk by chunk (no temporary copy of a multi-GB model)."""

    def __init__(self, artifact_dir: Path, index: dict[str, Any]) -> None:
        self.dir = artifact_dir
        self.index_bytes = json.dumps(index, indent=2, sort_keys=True).encode()
        self.files = [(f["path"], int(f["size"])) for f in index["files"]]
        self.headers = [_header(PREFIX + path, size) for path, size in self.files]
        body = len(_header(INDEX, len(self.index_bytes))) + len(self.index_bytes) + len(_pad(len(self.index_bytes)))
        body += sum(len(h) + size + len(_pad(size)) for h, (_, size) in zip(self.headers, self.files, strict=True))
        body += 2 * tarfile.BLOCKSIZE
        self.trailer = b"\0" * (2 * tarfile.BLOCKSIZE + (-body % tarfile.RECORDSIZE))
        self.length = body - 2 * tarfile.BLOCKSIZE + len(self.trailer)

    def chunks(self) -> Iterator[bytes]:
        yield _header(INDEX, len(self.index_bytes)) + self.index_bytes + _pad(len(self.index_bytes))
        for header, (path, size) in zip(self.headers, self.files, strict=True):
            yield header
            sent = 0
            with (self.dir / path).open("rb") as fh:
                while sent < size:
                    chunk = fh.read(min(CHUNK, size - sent))
                    if not chunk:
                        raise UnsafeBundle(f"{path} shrank while it was being bundled")
                    sent += len(chunk)
                    yield chunk
            yield _pad(size)
        yield self.trailer


# -- checking ------------------------------------------------------------------------------------


def safe_relpath(name: str) -> str:
    """A relative POSIX path with no '..', no absolute root, no odd characters; else UnsafeBundle."""
    if not name or "\\" in name or "\0" in name or any(ord(c) < 32 for c in name):
        raise UnsafeBundle(f"member name {name!r} has characters a bundle may not use")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise UnsafeBundle(f"member {name!r} is an absolute path")
    if any(part in ("..", "") for part in name.split("/")) or ".." in p.parts:
        raise UnsafeBundle(f"member {name!r} leaves the bundle ('..' or an empty path part)")
    if p.parts and p.parts[0] == ".":
        raise UnsafeBundle(f"member {name!r}: use plain relative paths")
    return p.as_posix()


def parse_index(raw: bytes, caps: Caps) -> tuple[str, str, dict[str, Any], dict[str, dict[str, Any]]]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise UnsafeBundle(f"{INDEX} is not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("bundle_version") != VERSION:
        raise UnsafeBundle(f"{INDEX}: bundle_version {VERSION} expected (made by a newer tursi?)")
    key, name = data.get("key"), data.get("name")
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise UnsafeBundle(f"{INDEX}: 'key' must be 32 hex digits")
    if not is_valid_name(name):
        raise UnsafeBundle(f"{INDEX}: 'name' must match {NAME_RULE}")
    return key, name, _parse_target(data.get("target")), _parse_files(data.get("files"), caps)


def _parse_target(target: Any) -> dict[str, Any]:
    if not isinstance(target, dict) or not isinstance(target.get("arch"), str):
        raise UnsafeBundle(f"{INDEX}: 'target' must be a hardware profile with an 'arch'")
    features = target.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise UnsafeBundle(f"{INDEX}: target 'features' must be a list of names")
    return target


def _parse_files(listed: Any, caps: Caps) -> dict[str, dict[str, Any]]:
    if not isinstance(listed, list) or not listed:
        raise UnsafeBundle(f"{INDEX}: 'files' must be a non-empty list")
    if len(listed) > caps.files:
        raise BundleTooLarge(f"the bundle lists {len(listed)} files; the cap is {caps.files}")
    files: dict[str, dict[str, Any]] = {}
    for entry in listed:
        path, size, digest = (
            (entry.get(k) for k in ("path", "size", "sha256")) if isinstance(entry, dict) else [None] * 3
        )
        if not isinstance(path, str):
            raise UnsafeBundle(f"{INDEX}: every file entry is an object with a path")
        path = safe_relpath(path)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UnsafeBundle(f"{INDEX}: {path}: size must be a non-negative integer")
        if size > caps.file_bytes:
            raise BundleTooLarge(f"{path} is {size} bytes; the cap per file is {caps.file_bytes}")
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise UnsafeBundle(f"{INDEX}: {path}: sha256 must be 64 hex digits")
        if path in files:
            raise UnsafeBundle(f"{INDEX}: {path} is listed twice")
        files[path] = {"size": size, "sha256": digest}
    if "manifest.json" not in files:
        raise UnsafeBundle(f"{INDEX}: the artifact has no manifest.json")
    folders = {parent.as_posix() for path in files for parent in PurePosixPath(path).parents}
    both = sorted(folders & set(files))
    if both:
        raise UnsafeBundle(f"{INDEX}: {both[0]} is listed both as a file and as a folder")
    total = sum(f["size"] for f in files.values())
    if total > caps.total_bytes:
        raise BundleTooLarge(f"the bundle holds {total} bytes; the cap is {caps.total_bytes}")
    return files


def _member_path(member: tarfile.TarInfo) -> str:
    kinds = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "directory"}
    if member.issparse() or not member.isreg():
        kind = kinds.get(member.type, "device or special file")
        raise UnsafeBundle(f"member {member.name!r} is a {kind}: bundles hold regular files only")
    return safe_relpath(member.name)


@contextlib.contextmanager
def _damage_is_unsafe() -> Iterator[None]:
    """A member whose data runs past the end of the archive (truncated file) is a refusal, not a crash."""
    try:
        yield
    except tarfile.TarError as e:
        raise UnsafeBundle(f"the archive is damaged or truncated: {e}") from None


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")  # plain tar only: no decompression bombs to defuse
    except (tarfile.TarError, OSError) as e:
        raise UnsafeBundle(f"not a Tursi bundle (plain tar expected): {e}") from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        while True:
            member = tar.next()
            if member is None:
                return
            yield member
    except tarfile.TarError as e:
        raise UnsafeBundle(f"the archive is damaged: {e}") from None


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo, sink: io.RawIOBase | None = None) -> tuple[str, bytes]:
    fh = tar.extractfile(member)
    if fh is None:
        raise UnsafeBundle(f"member {member.name!r} has no content")
    h = hashlib.sha256()
    kept = bytearray()
    keep = member.name == PREFIX + "manifest.json"
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        h.update(chunk)
        if keep and len(kept) <= MAX_MANIFEST_BYTES:
            kept += chunk
        if sink is not None:
            sink.write(chunk)
    return h.hexdigest(), bytes(kept)


def max_headers(caps: Caps) -> int:
    """Header blocks a bundle may have: each file and the index, each with a PAX and a GNU long-name header."""
    return 3 * (caps.files + 2)


def verify(path: Path, caps: Caps = Caps()) -> BundleInfo:
    """Check a bundle end to end without writing anything. Raises UnsafeBundle, DigestMismatch, BundleTooLarge."""
    if path.stat().st_size > caps.total_bytes + MAX_INDEX_BYTES + (caps.files + 2) * 3 * tarfile.BLOCKSIZE:
        raise BundleTooLarge(f"the bundle is {path.stat().st_size} bytes; the cap is {caps.total_bytes}")
    scan_headers(path, max_headers(caps))
    with _open(path) as tar, _damage_is_unsafe():
        members = _members(tar)
        first = next(members, None)
        if first is None or first.name != INDEX:
            raise UnsafeBundle(f"not a Tursi bundle: {INDEX} must come first")
        _member_path(first)
        if first.size > MAX_INDEX_BYTES:
            raise BundleTooLarge(f"{INDEX} is {first.size} bytes; the cap is {MAX_INDEX_BYTES}")
        raw = tar.extractfile(first).read()  # type: ignore[union-attr]  # regular file: never None
        key, name, target, files = parse_index(raw, caps)
        manifest_raw = _check_members(tar, members, files)
    return BundleInfo(key, name, target, files, _parse_manifest(manifest_raw, files))


def _check_members(tar: tarfile.TarFile, members: Iterator[tarfile.TarInfo], files: dict[str, dict[str, Any]]) -> bytes:
    seen: set[str] = set()
    manifest_raw = b""
    for member in members:
        rel = _member_path(member)
        if not rel.startswith(PREFIX):
            raise UnsafeBundle(f"member {rel!r} is outside {PREFIX}")
        rel = rel[len(PREFIX) :]
        expected = files.get(rel)
        if expected is None:
            raise UnsafeBundle(f"member {rel!r} is not listed in {INDEX}")
        if rel in seen:
            raise UnsafeBundle(f"member {rel!r} appears twice")
        seen.add(rel)
        if member.size != expected["size"]:
            raise DigestMismatch(f"{rel}: {member.size} bytes, but {INDEX} says {expected['size']}", path=rel)
        digest, kept = _hash_member(tar, member)
        if digest != expected["sha256"]:
            raise DigestMismatch(f"{rel}: sha256 {digest[:16]}... does not match {INDEX}", path=rel)
        if rel == "manifest.json":
            manifest_raw = kept
    missing = sorted(set(files) - seen)
    if missing:
        raise UnsafeBundle(f"listed but missing from the archive: {', '.join(missing[:5])}")
    return manifest_raw


def _parse_manifest(raw: bytes, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The artifact's manifest, checked as tursid and the worker will read it: every field's type, and every
    file it names a plain relative path to a regular file the bundle holds."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UnsafeBundle(f"manifest.json is over {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnsafeBundle("the artifact's manifest.json is not JSON") from None
    problem = cache.manifest_problem(manifest)
    if problem:
        raise UnsafeBundle(f"the artifact's manifest.json is not usable: {problem}")
    for role, name in manifest.get("files", {}).items():
        rel = safe_relpath(name)
        if rel not in files:
            raise UnsafeBundle(f"manifest.json files.{role} names {rel!r}, which the bundle does not hold")
    return manifest


def extract(path: Path, info: BundleInfo, dest: Path) -> None:
    """Unpack a verified bundle into ``dest`` (an empty staging directory we made), digests checked again."""
    scan_headers(path, max_headers(Caps(files=len(info.files))))
    with _open(path) as tar, _damage_is_unsafe():
        for member in _members(tar):
            if member.name == INDEX:
                continue
            rel = _member_path(member)[len(PREFIX) :]
            expected = info.files.get(rel)
            if expected is None:  # the file changed since verify()
                raise UnsafeBundle(f"member {rel!r} is not listed in {INDEX}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(dest.resolve()):
                raise UnsafeBundle(f"member {rel!r} leaves the artifact directory")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as sink:
                digest, _ = _hash_member(tar, member, sink)  # type: ignore[arg-type]
            if digest != expected["sha256"]:
                raise DigestMismatch(f"{rel}: sha256 changed between check and unpack", path=rel)
