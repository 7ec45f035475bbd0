"""Read a GGUF file's header and key/value metadata without llama.cpp (tursid must stay lean).

Every length is bounds-checked against the file size before it is trusted, so a truncated or
hostile header is an error, never a huge allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tursi.errors import InvalidRequest

MAGIC = b"GGUF"
MAX_KV = 1 << 16
MAX_STRING = 1 << 24  # chat templates and merges are long, but not 16 MiB long
MAX_ARRAY = 1 << 24

# GGUF value types -> struct format (scalars)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

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
    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size

    def take(self, n: int) -> bytes:
        if n < 0 or self.fh.tell() + n > self.size:
            raise InvalidGGUF("GGUF header runs past the end of the file (truncated or corrupt)")
        return self.fh.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise InvalidGGUF(f"GGUF string of {n} bytes exceeds the {MAX_STRING}-byte limit")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array(keep)
        raise InvalidGGUF(f"unknown GGUF value type {vtype}")

    def array(self, keep: bool) -> Any:
        etype, n = self.unpack("<I"), self.unpack("<Q")
        if n > MAX_ARRAY:
            raise InvalidGGUF(f"GGUF array of {n} items exceeds the limit")
        if etype in _SCALARS and not keep:
            self.take(n * struct.calcsize(_SCALARS[etype]))  # skip without decoding
            return f"<array of {n}>"
        items = [self.value(etype, keep) for _ in range(n)]
        return items if keep else f"<array of {n}>"


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
        if kvs > MAX_KV or tensors > MAX_ARRAY:
            raise InvalidGGUF(f"implausible GGUF counts: {tensors} tensors, {kvs} keys")
        meta: dict[str, Any] = {}
        for _ in range(kvs):
            key = r.string()
            meta[key] = r.value(r.unpack("<I"), keep_arrays)
    return GGUFInfo(version, tensors, meta)
