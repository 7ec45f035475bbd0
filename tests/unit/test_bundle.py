"""Bundle writing and checking on small hand-made archives: each unsafe shape is refused by verify()."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tursi.core.errors import BundleTooLarge, DigestMismatch, UnsafeBundle
from tursi.formats import bundle

KEY = "ab" * 16
TARGET = {"name": "x86-64-v3", "arch": "x86_64", "features": ["avx2"]}
PLAN = {"format": "onnx", "task": "embeddings", "runtime": "onnxruntime", "quantization": "int8"}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    d = tmp_path / "art"
    (d / "sub").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"plan": PLAN, "files": {"model": "model.onnx"}}))
    (d / "model.onnx").write_bytes(bytes(range(256)) * 40)
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


def write(artifact: Path, out: Path) -> dict[str, Any]:
    index = bundle.make_index(KEY, "tiny", TARGET, bundle.describe(artifact))
    writer = bundle.BundleWriter(artifact, index)
    data = b"".join(writer.chunks())
    assert len(data) == writer.length  # the Content-Length promised up front
    out.write_bytes(data)
    return index


def test_round_trip(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.tursi"
    write(artifact, out)
    info = bundle.verify(out)
    assert (info.key, info.name, info.target["name"]) == (KEY, "tiny", "x86-64-v3")
    assert set(info.files) == {"manifest.json", "model.onnx", "sub/tokenizer.json"}
    dest = tmp_path / "dest"
    dest.mkdir()
    bundle.extract(out, info, dest)
    assert (dest / "model.onnx").read_bytes() == (artifact / "model.onnx").read_bytes()
    assert (dest / "sub" / "tokenizer.json").read_text() == "{}"


def craft(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def good_members(artifact: Path, edit_index: Any = None) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    files = bundle.describe(artifact)
    index = bundle.make_index(KEY, "tiny", TARGET, files)
    if edit_index:
        edit_index(index)
    out: list[tuple[tarfile.TarInfo, bytes | None]] = [reg(bundle.INDEX, json.dumps(index).encode())]
    out += [reg("artifact/" + p, (artifact / p).read_bytes()) for p in sorted(files)]
    return out


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


Members = list[tuple[tarfile.TarInfo, bytes | None]]


def _with(members: Members, *extra: tuple[tarfile.TarInfo, bytes | None]) -> Members:
    return [*members, *extra]


def _changed(members: Members, fn: Any) -> Members:
    return [(i, fn(d) if i.name == "artifact/model.onnx" and d else d) for i, d in members]


EDITS: dict[str, Any] = {
    "absolute": lambda m, a: _with(m, reg("/etc/cron.d/x", b"x")),
    "dotdot": lambda m, a: _with(m, reg("artifact/sub/../../../x", b"x")),
    "symlink": lambda m, a: _with(m, special("artifact/link", tarfile.SYMTYPE, "/etc/passwd")),
    "hardlink": lambda m, a: _with(m, special("artifact/link", tarfile.LNKTYPE, "artifact/model.onnx")),
    "device": lambda m, a: _with(m, special("artifact/dev", tarfile.CHRTYPE)),
    "fifo": lambda m, a: _with(m, special("artifact/fifo", tarfile.FIFOTYPE)),
    "directory": lambda m, a: [m[0], special("artifact/sub", tarfile.DIRTYPE), *m[1:]],
    "unlisted": lambda m, a: _with(m, reg("artifact/extra.bin", b"x")),
    "duplicate": lambda m, a: _with(m, m[1]),
    "missing": lambda m, a: m[:-1],
    "index_not_first": lambda m, a: [*m[1:], m[0]],
    "index_dotdot": lambda m, a: good_members(a, lambda i: i["files"][0].update(path="../manifest.json")),
    "index_bad_key": lambda m, a: good_members(a, lambda i: i.update(key="../../etc")),
    "index_bad_sha": lambda m, a: good_members(a, lambda i: i["files"][0].update(sha256="zz")),
    "changed_byte": lambda m, a: _changed(m, lambda d: d[:5] + b"!" + d[6:]),
    "changed_size": lambda m, a: _changed(m, lambda d: d + b"!"),
    "over_cap": lambda m, a: m,
}


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("absolute", UnsafeBundle, "absolute path"),
        ("dotdot", UnsafeBundle, "leaves the bundle"),
        ("symlink", UnsafeBundle, "symbolic link"),
        ("hardlink", UnsafeBundle, "hard link"),
        ("device", UnsafeBundle, "device or special file"),
        ("fifo", UnsafeBundle, "device or special file"),
        ("directory", UnsafeBundle, "directory"),
        ("unlisted", UnsafeBundle, "not listed"),
        ("duplicate", UnsafeBundle, "appears twice"),
        ("missing", UnsafeBundle, "missing from the archive"),
        ("index_not_first", UnsafeBundle, "must come first"),
        ("index_dotdot", UnsafeBundle, "leaves the bundle"),
        ("index_bad_key", UnsafeBundle, "32 hex digits"),
        ("index_bad_sha", UnsafeBundle, "64 hex digits"),
        ("changed_byte", DigestMismatch, "does not match"),
        ("changed_size", DigestMismatch, "bytes, but"),
        ("over_cap", BundleTooLarge, "cap"),
    ],
)
def test_unsafe_shapes_are_refused(artifact: Path, tmp_path: Path, case: str, error: type, message: str) -> None:
    members = EDITS[case](good_members(artifact), artifact)
    caps = bundle.Caps(total_bytes=5000, file_bytes=5000) if case == "over_cap" else bundle.Caps()
    path = craft(tmp_path / f"{case}.tursi", members)
    with pytest.raises(error, match=message):
        bundle.verify(path, caps)


def test_not_a_tar_and_compressed_tars_are_refused(tmp_path: Path, artifact: Path) -> None:
    junk = tmp_path / "junk.tursi"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnsafeBundle):
        bundle.verify(junk)
    gz = tmp_path / "x.tursi"
    with tarfile.open(gz, "w:gz") as tar:
        for info, data in good_members(artifact):
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data or b""))
    with pytest.raises(UnsafeBundle, match="plain tar"):
        bundle.verify(gz)


def test_a_truncated_bundle_is_refused_not_a_crash(artifact: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.tursi"
    write(artifact, whole)
    data = whole.read_bytes()
    for cut in (700, 2000, 10240, 13825):  # inside the index, before members, inside model.onnx, the last byte
        part = tmp_path / f"cut{cut}.tursi"
        part.write_bytes(data[:cut])
        with pytest.raises(UnsafeBundle):  # was tarfile.ReadError (a 500) when the index's data ran short (atheris)
            bundle.verify(part)


def test_describe_refuses_links(artifact: Path) -> None:
    (artifact / "link").symlink_to(artifact / "model.onnx")
    with pytest.raises(UnsafeBundle, match="regular files"):
        bundle.describe(artifact)


def gguf_artifact(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    d = tmp_path / "gguf-art"
    d.mkdir()
    (d / "model.gguf").write_bytes(b"GGUF" + bytes(100))
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


GGUF_PLAN = {"format": "gguf", "task": "chat", "runtime": "llama", "quantization": "Q4_0"}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/home/user/other.gguf", "absolute path"),  # any GGUF on the device
        ("../../other.gguf", "leaves the bundle"),
        ("sub/../model.gguf", "leaves the bundle"),
        ("other.gguf", "does not hold"),  # not one of the bundle's files
    ],
)
def test_manifest_file_paths_stay_inside_the_bundle(tmp_path: Path, model: str, message: str) -> None:
    art = gguf_artifact(tmp_path, {"plan": GGUF_PLAN, "files": {"model": model}})
    out = tmp_path / "x.tursi"
    write(art, out)
    with pytest.raises(UnsafeBundle, match=message):
        bundle.verify(out)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"source": "x"}, "source has the wrong type"),  # broke images/rmi/prune/save for every artifact
        ({"source": {"reference": ["a"]}}, "source.reference"),
        ({"quantization": 4}, "quantization has the wrong type"),
        ({"size_bytes": "12"}, "size_bytes"),
        ({"created_at": float("nan")}, "finite"),
        ({"created_at": True}, "created_at"),
        ({"files": {"model": 5}}, "files must map"),
        ({"files": ["model.gguf"]}, "files has the wrong type"),
        ({"tools": {"llama": 1}}, "tools must map"),
        ({"plan": {**GGUF_PLAN, "runtime": "onnxruntime"}}, "plan.runtime"),
        ({"plan": {**GGUF_PLAN, "quantization": None}}, "plan.quantization"),
        ({"plan": {**GGUF_PLAN, "task": "shell"}}, "plan.task"),
        ({"plan": {**GGUF_PLAN, "params": {"hardware_target": 7}}}, "hardware_target"),
        ({"plan": {**GGUF_PLAN, "params": []}}, "plan.params"),
        ({"files": {}}, "files.model"),  # a gguf artifact must name its model file
    ],
)
def test_manifest_schema_is_checked_at_load(tmp_path: Path, manifest: dict[str, Any], message: str) -> None:
    art = gguf_artifact(tmp_path, {"plan": GGUF_PLAN, "files": {"model": "model.gguf"}, **manifest})
    out = tmp_path / "x.tursi"
    write(art, out)
    with pytest.raises(UnsafeBundle, match=message):
        bundle.verify(out)


def test_a_path_listed_as_file_and_folder_is_refused_before_unpacking(tmp_path: Path, artifact: Path) -> None:
    """`a` and `a/b` both listed: verify() passed, then extract() failed half-way (a 500)."""

    def both(index: dict[str, Any]) -> None:
        index["files"] += [{"path": "a", "size": 1, "sha256": SHA_X}, {"path": "a/b", "size": 1, "sha256": SHA_X}]

    members = [*good_members(artifact, both), reg("artifact/a", b"x"), reg("artifact/a/b", b"x")]
    path = craft(tmp_path / "both.tursi", members)
    with pytest.raises(UnsafeBundle, match="both as a file and as a folder"):
        bundle.verify(path)


SHA_X = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"  # sha256(b"x")


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_a_huge_extended_header_is_refused_without_reading_it(tmp_path: Path, kind: bytes) -> None:
    """tarfile reads a PAX or GNU long-name header whole: one declaring 300 MiB cost 600 MiB before any check."""
    import tracemalloc

    header = tarfile.TarInfo("././@LongHeader")
    header.type, header.size = kind, 300 << 20
    path = tmp_path / "huge.tursi"
    with path.open("wb") as fh:
        fh.write(header.tobuf(tarfile.USTAR_FORMAT))
        fh.truncate(512 + (300 << 20) + 1024)  # sparse: no disk used, but tarfile would read it all
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeBundle) as refused:
            bundle.verify(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # was over 300 MiB: the header was read whole before anything looked at it
    assert "the cap is 65536" in str(refused.value)


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def _pax_sized(name: str, data: bytes) -> bytes:
    """A member whose size is only in its PAX record (its ustar size field says 0), as for files over 8 GiB."""
    info = tarfile.TarInfo(name)
    info.size, info.pax_headers = len(data), {"size": str(len(data))}
    buf = bytearray(info.tobuf(tarfile.PAX_FORMAT))
    ustar = len(buf) - tarfile.BLOCKSIZE
    buf[ustar + 124 : ustar + 136] = b"00000000000\0"
    buf[ustar + 148 : ustar + 156] = b" " * 8
    buf[ustar + 148 : ustar + 156] = b"%06o\0 " % sum(buf[ustar:])
    return bytes(buf) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def test_a_pax_size_record_is_followed_by_the_scan(artifact: Path, tmp_path: Path) -> None:
    """The header scan takes a member's size from its PAX record, as tarfile does: model data that looks like a
    huge extended header is data, not a header to refuse."""
    decoy = tarfile.TarInfo("decoy")
    decoy.type, decoy.size = tarfile.XHDTYPE, 1 << 30
    (artifact / "model.onnx").write_bytes(decoy.tobuf(tarfile.USTAR_FORMAT) + bytes(100))
    files = bundle.describe(artifact)
    index = json.dumps(bundle.make_index(KEY, "tiny", TARGET, files)).encode()
    parts = [_member(bundle.INDEX, index)]
    for rel in sorted(files):
        pack = _pax_sized if rel == "model.onnx" else _member
        parts.append(pack("artifact/" + rel, (artifact / rel).read_bytes()))
    path = tmp_path / "pax.tursi"
    path.write_bytes(b"".join(parts) + bytes(2 * tarfile.BLOCKSIZE))
    assert bundle.verify(path).files["model.onnx"]["size"] == 612


def test_a_conversion_replaces_a_damaged_entry_under_its_key(tmp_path: Path) -> None:
    """A damaged cache entry (here: a manifest of the wrong shape) must not make every later conversion of that
    model fail at publish: the fresh, complete artifact takes its place; a complete one already there is kept."""
    from converters import cache

    key = "ab" * 16
    damaged = tmp_path / key
    damaged.mkdir()
    (damaged / cache.MANIFEST).write_text('{"source": "x"}')
    staging = cache.make_staging(tmp_path, key)
    (staging / "model.gguf").write_bytes(b"GGUF")
    good = {
        "source": {"reference": "m", "path": "/m", "digest": "sha256:" + "0" * 64, "size_bytes": 4},
        "plan": {"task": "chat", "format": "gguf", "runtime": "llama", "quantization": "Q4_0"},
        "files": {"model": "model.gguf"},
    }
    (staging / cache.MANIFEST).write_text(json.dumps(good))
    assert cache.manifest_problem(good) is None
    final = cache.publish(staging, tmp_path, key)
    assert cache.lookup(tmp_path, key) is not None
    assert (final / "model.gguf").read_bytes() == b"GGUF"
    assert not list(tmp_path.glob(".tmp-*"))
