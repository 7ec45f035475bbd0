"""A cached artifact as an OCI artifact, and back.

- **GGUF** artifacts go up as Docker model-spec artifacts, so Docker Model Runner and other model-spec clients can
  pull them: an OCI image manifest whose config is ``application/vnd.docker.ai.model.config.v0.1+json`` (the fields
  Docker's own code writes: ``config.format/quantization/architecture/size``, ``descriptor.created``,
  ``rootfs.diff_ids``) and the GGUF as one uncompressed ``application/vnd.docker.ai.gguf.v3`` layer, the source's
  license as ``application/vnd.docker.ai.license`` and the GGUF's chat template as
  ``application/vnd.docker.ai.chat.template.jinja`` where present (the template is also inside the GGUF: on pull it
  is not written as a file). Tursi's manifest (plan, quality, source digest) rides in the config under ``tursi``,
  which Docker's decoder ignores.
- **ONNX** artifacts use Tursi's own types: config ``application/vnd.tursi.model.config.v1+json`` holding the
  manifest, one uncompressed layer per file, titled with its path (``org.opencontainers.image.title``).

Pull checks every blob as it streams (``RegistryClient.fetch_blob``), writes into a staging folder of the artifact
cache, checks the manifest as the cache does, then moves it into place: a failed pull keeps nothing. An artifact
already in the cache is not downloaded again.

What the registry sends is checked before it is used: every descriptor (a sha256 digest, a size, a string media
type), a manifest's layer count, an index's entry count, each layer's title (a short relative path inside the
artifact). A pulled artifact lives under a key Tursi derives from the manifest's digest (``pulled_key``), in a
namespace of its own, never under the key the remote's config names: a registry cannot plant a folder where a
conversion's result (or another registry's pull) would be found.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from converters import cache
from tursi.core.errors import DigestMismatch, RegistryFailed, RegistryMalformed, TargetMismatch
from tursi.core.fit import misfits
from tursi.core.hardware import HardwareProfile, target_profiles
from tursi.registry.client import MAX_MANIFEST, PULL_DEADLINE_S, RegistryClient, checked_digest, file_digest
from tursi.registry.reference import Reference

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MODEL_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
GGUF_LAYER = "application/vnd.docker.ai.gguf.v3"
TURSI_CONFIG = "application/vnd.tursi.model.config.v1+json"
TURSI_FILE = "application/vnd.tursi.file.v1"
TURSI_ONNX = "application/vnd.tursi.onnx.v1"
LICENSE_LAYER = "application/vnd.docker.ai.license"
CHAT_TEMPLATE_LAYER = "application/vnd.docker.ai.chat.template.jinja"
TITLE = "org.opencontainers.image.title"
DERIVED = "dev.tursi.derived"  # a layer that repeats what another holds (the GGUF's chat template): not a file
PROFILE = "dev.tursi.target.profile"
KEY = re.compile(r"[0-9a-f]{16,64}")
MAX_LAYERS = 1000  # a Tursi artifact is a few files; an ONNX model with external data a few hundred at most
MAX_ENTRIES = 64  # an index's targets
MAX_TITLE = 1024  # a layer's path inside the artifact; each component also at most 255 bytes (NAME_MAX)
MAX_BLOB = 1 << 40


def pulled_key(manifest_digest: str) -> str:
    """Where the artifact of the image manifest ``manifest_digest`` lives in the cache: a namespace of its own
    ("tursi-pull:"), so no remote can name a conversion's key (or a bundle's); the digest covers the config and every
    layer, so one key is one content, whichever registry served it."""
    return hashlib.sha256(f"tursi-pull:{manifest_digest}".encode()).hexdigest()[:32]


def descriptor(value: Any, what: str, max_size: int = MAX_BLOB) -> dict[str, Any]:
    """``value`` as an OCI descriptor Tursi can use: RegistryMalformed naming what is wrong otherwise."""
    if not isinstance(value, dict):
        raise RegistryMalformed(f"{what} is not a descriptor (a JSON object)")
    checked_digest(value.get("digest"), what)
    size = value.get("size")
    if type(size) is not int or not 0 <= size <= max_size:
        raise RegistryMalformed(f"{what} has the size {str(size)[:40]!r}: a whole number from 0 to {max_size}")
    if not isinstance(value.get("mediaType", ""), str):
        raise RegistryMalformed(f"{what}'s mediaType is not a string")
    annotations = value.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        raise RegistryMalformed(f"{what}'s annotations are not a map of strings")
    return value


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryMalformed(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryMalformed(f"{what} is not a JSON object")
    return doc


@dataclass(frozen=True)
class Pushed:
    reference: str
    digest: str
    blobs_uploaded: int
    bytes_uploaded: int
    blobs_skipped: int


def push_artifact(client: RegistryClient, ref: Reference, artifact: Path, by_digest: bool = False) -> Pushed:
    """Pushes the cached artifact folder ``artifact`` under ``ref`` (its tag; only by its digest with
    ``by_digest``, as an index's entry)."""
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    gguf = manifest.get("plan", {}).get("format") == "gguf"
    layers: list[dict[str, Any]] = []
    sources: list[Path] = []
    for path in sorted(p for p in artifact.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(artifact).as_posix()
        if rel == "manifest.json":
            continue
        digest, size = file_digest(path)
        layers.append({"mediaType": _media(rel, gguf), "digest": digest, "size": size, "annotations": {TITLE: rel}})
        sources.append(path)
    template = _chat_template(artifact / "model.gguf") if gguf else None
    if template is not None:
        digest, size = _bytes_digest(template)
        layers.append({"mediaType": CHAT_TEMPLATE_LAYER, "digest": digest, "size": size,
                       "annotations": {DERIVED: "model.gguf:tokenizer.chat_template"}})  # fmt: skip
    config = _config(manifest, layers, gguf)
    config_digest, config_size = _bytes_digest(config)
    before = (client.traffic.blobs_uploaded, client.traffic.bytes_uploaded, client.traffic.blobs_skipped)
    client.push_blob(ref.repository, io.BytesIO(config), config_digest, config_size)
    for path, layer in zip(sources, layers, strict=False):
        with path.open("rb") as fh:
            client.push_blob(ref.repository, fh, layer["digest"], layer["size"])
    if template is not None:
        client.push_blob(ref.repository, io.BytesIO(template), layers[-1]["digest"], layers[-1]["size"])
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": MODEL_CONFIG if gguf else TURSI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
        "annotations": {"dev.tursi.artifact.key": str(manifest.get("key", ""))},
    }
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    pointer = _bytes_digest(body)[0] if by_digest else ref.tag or "latest"
    digest = client.put_manifest(ref.repository, pointer, body, OCI_MANIFEST)
    return _pushed(client, ref, digest, before)


def _media(rel: str, gguf: bool) -> str:
    if rel.endswith(".onnx"):
        return TURSI_ONNX
    if gguf and rel.endswith(".gguf"):
        return GGUF_LAYER
    return LICENSE_LAYER if rel in cache.LICENSE_FILES else TURSI_FILE


def _chat_template(gguf: Path) -> bytes | None:
    from tursi.formats.gguf_header import read_header

    if not gguf.is_file():
        return None
    template = read_header(gguf).metadata.get("tokenizer.chat_template")
    return template.encode() if isinstance(template, str) and template else None


def _pushed(client: RegistryClient, ref: Reference, digest: str, before: tuple[int, int, int]) -> Pushed:
    t = client.traffic
    return Pushed(
        str(ref), digest, t.blobs_uploaded - before[0], t.bytes_uploaded - before[1], t.blobs_skipped - before[2]
    )


def push_index(client: RegistryClient, ref: Reference, entries: list[tuple[Path, HardwareProfile]]) -> Pushed:
    """One tag for several targets: each artifact pushed by digest, then an OCI image index under ``ref``'s tag
    whose entries carry ``platform`` and the target profile's name (``dev.tursi.target.profile``)."""
    before = (client.traffic.blobs_uploaded, client.traffic.bytes_uploaded, client.traffic.blobs_skipped)
    manifests = []
    for artifact, profile in entries:
        pushed = push_artifact(client, ref, artifact, by_digest=True)
        size = len(client.get_manifest(ref.repository, pushed.digest)[0])
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": pushed.digest,
                "size": size,
                "platform": platform_of(profile.arch),
                "annotations": {PROFILE: profile.name},
            }
        )
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return _pushed(client, ref, client.put_manifest(ref.repository, ref.tag or "latest", body, OCI_INDEX), before)


def platform_of(arch: str) -> dict[str, str]:
    """OCI's platform for a profile's architecture, as Docker writes it (64-bit ARM boards: arm64 v8)."""
    if arch in ("aarch64", "arm64"):
        return {"os": "linux", "architecture": "arm64", "variant": "v8"}
    if arch in ("armv7l", "arm"):
        return {"os": "linux", "architecture": "arm", "variant": "v7"}
    return {"os": "linux", "architecture": "amd64" if arch in ("x86_64", "amd64") else arch}


def choose(ref: Reference, entries: list[dict[str, Any]], device: HardwareProfile) -> dict[str, Any]:
    """The index entry for ``device``: by its target profile and the same fit rules as bundles; of several that
    fit, the one planned for the most CPU features. TargetMismatch says what the tag offers and why none fits."""
    known = target_profiles()
    fitting: list[tuple[int, dict[str, Any]]] = []
    why = []
    for entry in entries:
        name = str((entry.get("annotations") or {}).get(PROFILE, ""))
        given = entry.get("platform")
        platform: dict[str, Any] = given if isinstance(given, dict) else {}
        target: dict[str, Any] = (
            asdict(known[name]) if name in known else {"name": name or "?", "arch": platform.get("architecture")}
        )
        reasons = misfits(target, device, 0)
        if reasons:
            why.append(f"{target['name']}: {'; '.join(reasons)}")
        else:
            fitting.append((len(target.get("features") or ()), entry))
    if not fitting:
        raise TargetMismatch(f"{ref} offers no artifact for this device: {' | '.join(why) or 'no entries'}")
    return max(fitting, key=lambda pair: pair[0])[1]


def _config(manifest: dict[str, Any], layers: list[dict[str, Any]], gguf: bool) -> bytes:
    doc: dict[str, Any] = {"tursi": manifest}
    if gguf:
        size = sum(int(layer["size"]) for layer in layers if layer["mediaType"] == GGUF_LAYER)
        doc |= {
            "config": {
                "format": "gguf",
                "quantization": str(manifest.get("quantization") or manifest.get("plan", {}).get("quantization", "")),
                "architecture": str(manifest.get("plan", {}).get("params", {}).get("architecture", "")),
                "size": f"{size / 2**20:.2f} MiB",
            },
            "descriptor": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(manifest.get("created_at", 0)))},
            "rootfs": {"type": "rootfs", "diff_ids": [layer["digest"] for layer in layers]},
        }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _bytes_digest(data: bytes) -> tuple[str, int]:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


@dataclass(frozen=True)
class Pulled:
    key: str | None  # the cached artifact (pushed by Tursi)
    gguf: Path | None  # or the model's GGUF, checked, when another tool pushed it (deploy it to import it)
    downloaded: bool


def pull_artifact(
    client: RegistryClient,
    ref: Reference,
    artifacts_dir: Path,
    device: HardwareProfile | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Pulled:
    """Pulls ``ref`` into the artifact cache. A multi-target tag gives the entry that fits ``device``; a model-spec
    artifact pushed by another tool (Docker's) gives its GGUF file, checked, under ``artifacts/.pulled``.
    ``progress(done, total)`` is told the bytes of the layers as they come (from the manifest on, nothing before)."""
    if client.deadline is None:
        client.deadline = time.monotonic() + PULL_DEADLINE_S
    body, media_type, manifest_digest = client.get_manifest(ref.repository, ref.pointer)
    doc = _json_object(body, f"the manifest of {ref}")
    if media_type == OCI_INDEX or doc.get("manifests") is not None:
        if device is None:
            raise RegistryFailed(f"{ref} is a multi-target tag: pulling it needs the device's hardware")
        entries = doc.get("manifests")
        if not isinstance(entries, list) or not 0 < len(entries) <= MAX_ENTRIES:
            raise RegistryMalformed(f"{ref}'s index has no list of 1 to {MAX_ENTRIES} entries")
        checked = [descriptor(entry, f"entry {i} of {ref}'s index", MAX_MANIFEST) for i, entry in enumerate(entries)]
        entry = choose(ref, checked, device)
        body, _, manifest_digest = client.get_manifest(ref.repository, str(entry["digest"]))
        doc = _json_object(body, f"the manifest {entry['digest']} of {ref}")
    config_desc = descriptor(doc.get("config"), f"{ref}'s config", MAX_MANIFEST)
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list) or len(raw_layers) > MAX_LAYERS:
        raise RegistryMalformed(f"{ref}'s manifest has no list of at most {MAX_LAYERS} layers")
    all_layers = [descriptor(layer, f"layer {i} of {ref}") for i, layer in enumerate(raw_layers)]
    buf = io.BytesIO()
    client.fetch_blob(ref.repository, config_desc["digest"], config_desc["size"], buf)
    manifest = _json_object(buf.getvalue(), f"{ref}'s config").get("tursi")
    if not isinstance(manifest, dict) or not KEY.fullmatch(str(manifest.get("key", ""))):
        return _foreign_gguf(client, ref, all_layers, artifacts_dir / ".pulled", progress)
    problem = cache.manifest_problem(manifest)
    if problem:
        raise RegistryFailed(f"{ref}: its Tursi manifest is not usable: {problem}")
    key = pulled_key(manifest_digest)
    if cache.lookup(artifacts_dir, key) is not None:
        return Pulled(key, None, False)
    layers = [layer for layer in all_layers if DERIVED not in (layer.get("annotations") or {})]
    titles = _titles(layers)
    _track(client, layers, progress)
    staging = cache.make_staging(artifacts_dir, key)
    try:
        for layer, title in zip(layers, titles, strict=True):
            target = staging / title
            target.parent.mkdir(parents=True, exist_ok=True)
            fetch_resumable(client, ref, layer, artifacts_dir / ".partial", into=target)
        cache.write_json_atomic(staging / "manifest.json", manifest)
        cache.publish(staging, artifacts_dir, key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Pulled(key, None, True)


def fetch_resumable(client: RegistryClient, ref: Reference, layer: dict[str, Any], folder: Path, into: Path) -> None:
    """The layer's blob, checked, moved to ``into``. It downloads into ``folder`` under a name Tursi derives from
    the checked digest; what an interrupted pull left there is kept and only the rest is fetched; a blob that fails
    its check is deleted, so the next pull starts over. Two pulls of one blob take turns (a lock per blob): the
    second finds the first's file gone and fetches its own copy, never writes into the first's."""
    digest, size = checked_digest(layer["digest"], "a layer"), int(layer["size"])
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / digest.removeprefix("sha256:")
    with _blob_lock(folder / f".{partial.name}.lock"):
        have = _hashed(partial) if partial.is_file() and partial.stat().st_size < size else None
        try:
            with partial.open("ab" if have else "wb") as fh:
                client.fetch_blob(ref.repository, digest, size, fh, have)
        except DigestMismatch:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(into)


@contextlib.contextmanager
def _blob_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, removed when released: a waiter that then finds its file unlinked (or another
    in its place) takes the lock again, so two holders never overlap and no lock files pile up."""
    while True:
        fh = open(path, "w")  # noqa: SIM115 - held across the yield
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        fh.close()


def _hashed(path: Path) -> tuple[Any, int]:
    import hashlib

    hasher, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size


def _track(client: RegistryClient, layers: list[dict[str, Any]], progress: Callable[[int, int], None] | None) -> None:
    if progress is None:
        return
    total, done = sum(int(layer["size"]) for layer in layers), [0]

    def on_bytes(count: int) -> None:
        done[0] += count
        progress(done[0], total)

    client.on_bytes = on_bytes
    progress(0, total)


def _foreign_gguf(
    client: RegistryClient,
    ref: Reference,
    layers: list[dict[str, Any]],
    folder: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Pulled:
    """The one GGUF layer of a model-spec artifact another tool pushed, checked, kept by its (checked) digest."""
    ggufs = [layer for layer in layers if layer.get("mediaType") == GGUF_LAYER]
    if len(ggufs) != 1:
        raise RegistryFailed(
            f"{ref} carries no Tursi manifest and {len(ggufs)} GGUF layers: Tursi takes another tool's artifact "
            "when it is one GGUF file (shards and safetensors are not supported)"
        )
    layer = ggufs[0]
    target = folder / (checked_digest(layer["digest"], "the GGUF layer").removeprefix("sha256:") + ".gguf")
    if target.is_file() and target.stat().st_size == int(layer["size"]):
        return Pulled(None, target, False)
    folder.mkdir(parents=True, exist_ok=True)
    _track(client, [layer], progress)
    fetch_resumable(client, ref, layer, folder.parent / ".partial", into=target)
    return Pulled(None, target, True)


def _titles(layers: list[dict[str, Any]]) -> list[str]:
    """Each layer's path inside the artifact, checked before anything is written: relative, no '..', short
    components, not manifest.json, no two alike, none a folder of another (``a`` and ``a/b``)."""
    titles: list[str] = []
    for layer in layers:
        title = str((layer.get("annotations") or {}).get(TITLE, ""))
        if not title and layer.get("mediaType") == GGUF_LAYER:
            title = "model.gguf"
        path = PurePosixPath(title)
        if (
            not title
            or len(title.encode()) > MAX_TITLE
            or path.is_absolute()
            or "\\" in title
            or "\x00" in title
            or any(part in ("..", ".") or len(part.encode()) > 255 for part in path.parts)
            or path.as_posix() != title
            or title == "manifest.json"
        ):
            raise RegistryMalformed(f"a layer's title {title[:100]!r} is not a short relative path inside the artifact")
        titles.append(title)
    if len(set(titles)) != len(titles):
        raise RegistryMalformed("two layers have the same title")
    folders = {str(parent) for title in titles for parent in PurePosixPath(title).parents}
    if clash := sorted(folders & set(titles)):
        raise RegistryMalformed(f"the layer {clash[0][:100]!r} is a file where other layers need a folder")
    return titles
