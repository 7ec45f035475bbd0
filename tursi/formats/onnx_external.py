"""Check an ONNX file's external-data references before onnxruntime opens it.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL`` with a
``location``, ``offset`` and ``length``). A hostile model (in a pushed bundle, say) could point
that location at ``../../home/tursi/.ssh/id_ed25519`` and serve the secret back as weights.
Every reference must name a plain relative path that stays inside the model's folder after
symlinks are resolved, and its byte range must lie inside that file.

The ``onnx`` package is not part of the serving install, and parsing a model with protobuf's
Python classes would copy every inline weight, so this walks the memory-mapped protobuf wire
format itself, descending only into the messages that can hold tensors:
ModelProto.graph(7), .training_info(20), .functions(25); TrainingInfoProto.initialization(1),
.algorithm(2); GraphProto.node(1), .initializer(5), .sparse_initializer(15); FunctionProto.node(7),
.attribute_proto(11); NodeProto.attribute(5); AttributeProto.t(5), .g(6), .tensors(10),
.graphs(11), .sparse_tensor(22), .sparse_tensors(23); SparseTensorProto.values(1), .indices(2);
TensorProto.external_data(13), .data_location(14).

It decodes exactly as onnxruntime's C++ protobuf does (``parse_context.h``), so no encoding can
show onnxruntime a field this walker does not see: a tag is at most 5 bytes and keeps its low 32
bits (an over-long tag for ``graph`` is still the graph); a length is at most 5 bytes and under
2 GiB; a varint value is at most 10 bytes and keeps its low 64 bits, and an enum its low 32.
Encodings protobuf refuses in what this walks (a 6-byte tag or length, an 11-byte varint, field 0)
are refused here too, as InvalidOnnx, and so are groups, which ONNX never uses.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

from tursi.core.errors import UnsafeModel

MAX_DEPTH = 64  # nested graphs (If/Loop bodies) deeper than this are refused, not recursed into
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# onnxruntime's own marker (kTensorProtoMemoryAddressTag, "*/_ORT_MEM_ADDR_/*"): the offset is then a raw
# address in its memory. Before 1.24 a model file could use it to read (or crash on) any address.
ORT_MEMORY_MARKER = "_ORT_MEM_ADDR_"
MAX_SIZE = (1 << 31) - 1 - 16  # protobuf refuses a length above INT_MAX - kSlopBytes
_TAG_BYTES, _SIZE_BYTES, _VARINT_BYTES = 5, 5, 10

# message kind -> {field number: child kind}; fields not listed are skipped by wire type
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}


class InvalidOnnx(UnsafeModel):
    code = "invalid_onnx"
    title = "Malformed ONNX file"


@dataclass(frozen=True)
class ExternalRef:
    location: str
    offset: int
    length: int | None


def check_folder(folder: Path) -> None:
    """Every ``*.onnx`` under ``folder`` (an artifact), confined to it."""
    for model in sorted(folder.rglob("*.onnx")):
        check(model, folder)


def check(model: Path, folder: Path | None = None) -> list[ExternalRef]:
    """The external-data references of ``model``, each confined to ``folder`` (default: the model's own).

    A location is resolved as onnxruntime resolves it, against the model's own directory."""
    folder = (folder or model.parent).resolve()
    refs = scan(model)
    for ref in refs:
        _confine(ref, model.parent, folder, model.name)
    return refs


def scan(model: Path) -> list[ExternalRef]:
    """Every external-data reference in ``model``. Raises InvalidOnnx for a malformed file."""
    with model.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise InvalidOnnx(f"{model.name} is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            found: list[ExternalRef] = []
            try:
                _walk(view, 0, size, "model", 0, found, model.name)
            except InvalidOnnx as e:
                raise e.with_traceback(None) from None  # its frames hold the view: drop them before unmapping
            return found


def _confine(ref: ExternalRef, base: Path, folder: Path, name: str) -> None:
    loc = ref.location
    parts = loc.replace("\\", "/").split("/")
    if ORT_MEMORY_MARKER in loc:
        raise UnsafeModel(f"{name}: external data location {loc!r} is onnxruntime's in-memory marker")
    if not loc or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":") or ".." in parts or "\0" in loc:
        raise UnsafeModel(f"{name}: external data location {loc!r} is not a plain path inside the model's folder")
    target = (base / loc).resolve()
    if not target.is_relative_to(folder):
        raise UnsafeModel(f"{name}: external data {loc!r} leads outside the model's folder (to {target})")
    if not target.is_file():
        raise InvalidOnnx(f"{name}: external data file {loc!r} is missing")
    size = target.stat().st_size
    end = ref.offset + (ref.length if ref.length is not None else 0)
    if ref.offset < 0 or end > size:
        raise InvalidOnnx(f"{name}: external data {loc!r} range {ref.offset}+{ref.length} is past its end ({size})")


def _varint(buf: memoryview, pos: int, end: int, name: str, most: int = _VARINT_BYTES) -> tuple[int, int]:
    """(value, next position) of a varint of at most ``most`` bytes, as protobuf reads it; the caller keeps
    the low bits protobuf keeps."""
    value = shift = 0
    for at in range(pos, min(end, pos + most)):
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at + 1
        shift += 7
    raise InvalidOnnx(f"{name}: truncated or overlong varint in the protobuf")


def _tag(buf: memoryview, pos: int, end: int, name: str) -> tuple[int, int, int]:
    """(field number, wire type, next position): ReadTag takes 5 bytes at most and keeps the low 32 bits."""
    tag, pos = _varint(buf, pos, end, name, _TAG_BYTES)
    tag &= 0xFFFFFFFF
    if tag >> 3 == 0:
        raise InvalidOnnx(f"{name}: field number 0 in the protobuf")
    return tag >> 3, tag & 7, pos


def _size(buf: memoryview, pos: int, end: int, name: str) -> tuple[int, int]:
    """(length, next position) of a length-delimited field: ReadSize takes 5 bytes at most, under 2 GiB."""
    length, pos = _varint(buf, pos, end, name, _SIZE_BYTES)
    if length > MAX_SIZE or length > end - pos:
        raise InvalidOnnx(f"{name}: a protobuf field runs past its message")
    return length, pos


def _walk(buf: memoryview, pos: int, end: int, kind: str, depth: int, found: list[ExternalRef], name: str) -> None:
    if depth > MAX_DEPTH:
        raise InvalidOnnx(f"{name}: graphs nest deeper than {MAX_DEPTH} levels")
    children = _CHILDREN[kind]
    entries: list[tuple[str, str]] = []
    external = False
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, name)
        if wire != 2:
            value, pos = _scalar(buf, pos, end, wire, name)
            # an enum is an int32: protobuf keeps the low 32 bits; any EXTERNAL counts, whatever follows it
            external |= kind == "tensor" and field == 14 and (value & 0xFFFFFFFF) == EXTERNAL
            continue
        length, pos = _size(buf, pos, end, name)
        child = children.get(field)
        if child == "entry":
            entries.append(_entry(buf, pos, pos + length, name))
        elif child is not None:
            _walk(buf, pos, pos + length, child, depth + 1, found, name)
        pos += length
    if kind == "tensor" and (external or entries):
        found.append(_external_ref(entries, name))


def _scalar(buf: memoryview, pos: int, end: int, wire: int, name: str) -> tuple[int, int]:
    """(value or 0, next position) of a varint or fixed-width field."""
    if wire == 0:
        value, pos = _varint(buf, pos, end, name)
        return value & 0xFFFFFFFFFFFFFFFF, pos
    width = {1: 8, 5: 4}.get(wire)
    if width is None:
        raise InvalidOnnx(f"{name}: protobuf wire type {wire} is not valid in ONNX")
    if pos + width > end:
        raise InvalidOnnx(f"{name}: a protobuf field runs past its message")
    return 0, pos + width


def _entry(buf: memoryview, pos: int, end: int, name: str) -> tuple[str, str]:
    """A StringStringEntryProto: (key, value)."""
    key = value = ""
    while pos < end:
        field, wire, pos = _tag(buf, pos, end, name)
        if wire != 2:
            raise InvalidOnnx(f"{name}: external data entries hold only strings")
        length, pos = _size(buf, pos, end, name)
        try:
            text = bytes(buf[pos : pos + length]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidOnnx(f"{name}: external data entry is not UTF-8") from e
        if field == 1:
            key = text
        elif field == 2:
            value = text
        pos += length
    return key, value


def _external_ref(pairs: list[tuple[str, str]], name: str) -> ExternalRef:
    keys = [k for k, _ in pairs if k in ("location", "offset", "length")]
    if len(keys) != len(set(keys)):
        raise InvalidOnnx(f"{name}: an external data key is given twice")
    entries = dict(pairs)
    location = entries.get("location", "")
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError as e:
        raise InvalidOnnx(f"{name}: external data offset/length must be integers") from e
    if offset < 0 or (length is not None and length < 0):
        raise InvalidOnnx(f"{name}: external data offset/length must not be negative")
    return ExternalRef(location, offset, length)
