"""Bounds-checked reading of a safetensors header before any library maps the file.

Layout: an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}, and an
optional "__metadata__" of strings}), then the tensor bytes. Every offset must lie inside the data section, match
its dtype and shape, and no two tensors may overlap.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from tursi.core.errors import UnsafeModel

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DEPTH = 8  # a header nests 3 deep ({name: {shape: [...]}}); json.loads recurses once per level
MAX_OBJECTS = 1 << 17  # one JSON object per tensor: more than this in one file is refused before parsing
# a JSON string, or an unterminated one up to the end: always matches, so stripping strings stays linear
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


class InvalidSafetensors(UnsafeModel):
    code = "invalid_safetensors"
    title = "The safetensors file is malformed"


def check(path: Path) -> int:
    """Validate ``path``; return its tensor count. Raises InvalidSafetensors with what is wrong."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InvalidSafetensors(f"{path.name}: {size} bytes is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise InvalidSafetensors(f"{path.name}: header length {n} exceeds the file ({size} bytes)")
        raw = fh.read(n)
    _check_shape(path.name, raw)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidSafetensors(f"{path.name}: the header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidSafetensors(f"{path.name}: the header is not a JSON object")
    return _check_entries(path.name, header, size - 8 - n)


def _check_shape(name: str, raw: bytes) -> None:
    """Refuse a header that nests deeper than MAX_DEPTH or holds more than MAX_OBJECTS objects, before json.loads
    builds it (a header of 100k ``[`` made it raise RecursionError). Works on the brackets outside strings."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"{") > MAX_OBJECTS:
        raise InvalidSafetensors(f"{name}: the header holds more than {MAX_OBJECTS} objects")
    for _ in range(MAX_DEPTH):  # each pass removes at least the innermost level
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    if brackets:
        raise InvalidSafetensors(f"{name}: the header nests deeper than {MAX_DEPTH} levels or is not JSON")


def _check_entries(name: str, header: dict[str, Any], data_bytes: int) -> int:
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise InvalidSafetensors(f"{name}: __metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict):
            raise InvalidSafetensors(f"{name}: tensor {key!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:  # a list here is unhashable (atheris)
            raise InvalidSafetensors(f"{name}: tensor {key!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise InvalidSafetensors(f"{name}: tensor {key!r} has a bad shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise InvalidSafetensors(f"{name}: tensor {key!r} points outside the file ({offsets!r})")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise InvalidSafetensors(f"{name}: tensor {key!r} size does not match its dtype and shape")
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise InvalidSafetensors(f"{name}: tensors {a!r} and {b!r} overlap")
    return len(spans)
