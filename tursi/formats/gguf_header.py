"""Read a GGUF file's header and key/value metadata without llama.cpp (tursid must stay lean).

Every length and count is bounds-checked against the file size before it is trusted, so a truncated
or hostile header is an error, never a huge allocation: arrays not kept are skipped by seeking (a
vocabulary is never decoded just to be dropped), arrays of arrays nest at most MAX_ARRAY_DEPTH deep, and
the tensor table holds at most MAX_TENSORS entries. The tensor table is checked too: names,
dimensions, known ggml types, offsets aligned to ``general.alignment`` and each tensor's bytes
inside the data section without overlapping another, before llama.cpp maps the file.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tursi.core.errors import InvalidRequest

MAGIC = b"GGUF"
MAX_KV = 1 << 16
MAX_STRING = 1 << 24  # chat templates and merges are long, but not 16 MiB long
MAX_ARRAY = 1 << 24
MAX_ARRAY_DEPTH = 4  # arrays of arrays: llama.cpp reads none; deeper than this is refused, not recursed into
MAX_TENSORS = 1 << 16  # real models have a few thousand; each costs tursid a few hundred bytes to check

# GGUF value types -> struct format (scalars)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
# the fewest bytes one item takes in the file: a count of items larger than the bytes left is refused unread
_MIN_BYTES = {**{t: struct.calcsize(f) for t, f in _SCALARS.items()}, _STRING: 8, _ARRAY: 4 + 8}
KV_MIN_BYTES = 8 + 4 + 1  # key length, value type, the smallest value
TENSOR_MIN_BYTES = 8 + 4 + 8 + 4 + 8  # name length, dimension count, one dimension, ggml type, offset

# llama.cpp's LLAMA_FTYPE values -> names used in ps/inspect
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
UNQUANTIZED = {"F32", "F16", "BF16"}

# ggml tensor type -> (elements per block, bytes per block), as ggml defines them
GGML_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18), 42: (64, 18),
}  # fmt: skip
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME, with its terminating zero
DEFAULT_ALIGNMENT = 32
EMBEDDING_ARCHS = {"bert", "nomic-bert", "jina-bert-v2", "nomic-bert-moe", "modern-bert"}


class InvalidGGUF(InvalidRequest):
    code = "invalid_gguf"
    title = "Invalid GGUF file"
    http_status = 422
    exit_code = 65


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    tensor_count: int
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def file_type(self) -> str:
        ft = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ft, f"type{ft}") if isinstance(ft, int) else "unknown"

    @property
    def is_embedding_model(self) -> bool:
        return self.architecture in EMBEDDING_ARCHS or f"{self.architecture}.pooling_type" in self.metadata


class _Reader:
    """Reads the header in place: values that are not kept are skipped by seeking, never built."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size

    def left(self) -> int:
        return self.size - self.fh.tell()

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left():
            raise InvalidGGUF("GGUF header runs past the end of the file (truncated or corrupt)")
        return self.fh.read(n)

    def skip(self, n: int) -> None:
        if n < 0 or n > self.left():
            raise InvalidGGUF("GGUF header runs past the end of the file (truncated or corrupt)")
        self.fh.seek(n, 1)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string_length(self) -> int:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise InvalidGGUF(f"GGUF string of {n} bytes exceeds the {MAX_STRING}-byte limit")
        return n

    def skip_strings(self, n: int) -> None:
        """Step over ``n`` strings reading only their lengths, from a map of the file (a vocabulary is 100k+)."""
        pos, length = self.fh.tell(), 0
        with mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                for _ in range(n):
                    (length,) = _U64.unpack_from(mm, pos)
                    if length > MAX_STRING:
                        break
                    pos += 8 + length
            except struct.error:
                pos = self.size + 1
        if length > MAX_STRING:
            raise InvalidGGUF(f"GGUF string of {length} bytes exceeds the {MAX_STRING}-byte limit")
        if pos > self.size:
            raise InvalidGGUF("GGUF header runs past the end of the file (truncated or corrupt)")
        self.fh.seek(pos)

    def string(self) -> str:
        return self.take(self.string_length()).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array(keep, depth)
        raise InvalidGGUF(f"unknown GGUF value type {vtype}")

    def array(self, keep: bool, depth: int) -> Any:
        """An array value; ``depth`` arrays enclose it. Not kept: its items are skipped, not built."""
        if depth >= MAX_ARRAY_DEPTH:
            raise InvalidGGUF(f"GGUF arrays nest deeper than {MAX_ARRAY_DEPTH} levels")
        etype, n = self.unpack("<I"), self.unpack("<Q")
        if etype not in _MIN_BYTES:
            raise InvalidGGUF(f"unknown GGUF value type {etype}")
        if n > MAX_ARRAY or n * _MIN_BYTES[etype] > self.left():
            raise InvalidGGUF(f"GGUF array of {n} items exceeds the limit or the file")
        if keep:
            return [self.value(etype, keep, depth + 1) for _ in range(n)]
        if etype in _SCALARS:
            self.skip(n * _MIN_BYTES[etype])
        elif etype == _STRING:
            self.skip_strings(n)
        else:
            for _ in range(n):
                self.array(False, depth + 1)
        return f"<array of {n}>"


def read_header(path: Path, keep_arrays: bool = False) -> GGUFInfo:
    size = path.stat().st_size
    with path.open("rb") as fh:
        r = _Reader(fh, size)
        if r.take(4) != MAGIC:
            raise InvalidGGUF(f"{path.name} is not a GGUF file (bad magic)")
        version = r.unpack("<I")
        if version not in (2, 3):
            raise InvalidGGUF(f"unsupported GGUF version {version}")
        tensors, kvs = r.unpack("<Q"), r.unpack("<Q")
        if kvs > MAX_KV or tensors > MAX_TENSORS or kvs * KV_MIN_BYTES + tensors * TENSOR_MIN_BYTES > r.left():
            raise InvalidGGUF(f"implausible GGUF counts: {tensors} tensors, {kvs} keys in {size} bytes")
        meta: dict[str, Any] = {}
        for _ in range(kvs):
            key = r.string()
            meta[key] = r.value(r.unpack("<I"), keep_arrays)
        _check_tensors(r, tensors, meta)
    return GGUFInfo(version, tensors, meta)


def _tensor_name(r: _Reader, seen: set[str]) -> str:
    """The next tensor's name, new and short: its length is checked before a byte of it is read."""
    length = r.string_length()
    if length >= MAX_NAME:
        raise InvalidGGUF(f"a tensor name of {length} bytes is too long (under {MAX_NAME})")
    name = r.take(length).decode("utf-8", errors="replace")
    if name in seen:
        raise InvalidGGUF(f"tensor name {name!r} is repeated")
    seen.add(name)
    return name


def _check_tensors(r: _Reader, count: int, meta: dict[str, Any]) -> None:
    """The tensor table: every tensor known, aligned, inside the data section, none overlapping."""
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
        raise InvalidGGUF(f"general.alignment {alignment!r} is not a power of two")
    spans: list[tuple[int, int, str]] = []
    names: set[str] = set()
    for _ in range(count):
        name = _tensor_name(r, names)
        n_dims = r.unpack("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise InvalidGGUF(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})")
        dims = [r.unpack("<Q") for _ in range(n_dims)]
        ggml_type, offset = r.unpack("<I"), r.unpack("<Q")
        block = GGML_BLOCKS.get(ggml_type)
        if block is None:
            raise InvalidGGUF(f"tensor {name!r} has unknown ggml type {ggml_type}")
        elements = 1
        for d in dims:
            elements *= d
        if any(d == 0 for d in dims) or elements >= 1 << 62 or dims[0] % block[0]:
            raise InvalidGGUF(f"tensor {name!r} has impossible dimensions {dims} for its type")
        if offset % alignment:
            raise InvalidGGUF(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        spans.append((offset, elements // block[0] * block[1], name))
    data_start = -(-r.fh.tell() // alignment) * alignment
    room = r.size - data_start
    end_before = 0
    for offset, nbytes, name in sorted(spans):
        if offset < end_before:
            raise InvalidGGUF(f"tensor {name!r} overlaps the tensor before it")
        if offset + nbytes > room:
            raise InvalidGGUF(f"tensor {name!r} ends past the end of the file (truncated or corrupt)")
        end_before = offset + nbytes
