"""Coverage-guided fuzzing (atheris + libFuzzer) of the parsers that read untrusted files before any library does.

    python -m tests.fuzz.atheris_parsers TARGET [libFuzzer flags, e.g. -runs=20000 -max_total_time=10]

TARGET is gguf, safetensors, onnx or bundle. Each input is written to a file and handed to the parser; its own
clear errors (the TursiError it documents) are expected, anything else is a crash that libFuzzer reports with the
input that caused it. Seeds are well-formed files made here, so mutations start from deep inside each format.
tests/unit/test_atheris.py runs every target for a few seconds in CI.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from tests.protobuf_wire import varint as _varint
    from tursi.core.errors import TursiError
    from tursi.formats import bundle, gguf_header, onnx_external, safetensors_header

SCRATCH = Path(tempfile.mkdtemp(prefix="tursi-atheris-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, SCRATCH, True)
KEY = "ab" * 16


def _gguf_seed() -> bytes:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kvs = s("general.architecture") + struct.pack("<I", 8) + s("llama")
    kvs += s("general.alignment") + struct.pack("<II", 4, 32)
    kvs += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + s("a") + s("b")  # a string array
    kvs += s("x.nested") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 0, 1) + b"\x07"  # an array of arrays
    infos = s("a") + struct.pack("<IQQIQ", 2, 4, 8, 0, 0) + s("b") + struct.pack("<IQQIQ", 2, 32, 2, 2, 128)
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, 4) + kvs + infos
    return head + b"\0" * (-len(head) % 32) + b"\0" * (128 + 36)


def _safetensors_seed() -> bytes:
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I8", "shape": [4], "data_offsets": [16, 20]},
        }
    ).encode()
    return struct.pack("<Q", len(header)) + header + bytes(20)


def _onnx_seed() -> bytes:
    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    entries = b"".join(
        field(13, field(1, k.encode()) + field(2, v.encode()))
        for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16"))
    )
    tensor = field(8, b"w") + entries + _varint(14 << 3) + _varint(1)  # data_location = EXTERNAL
    node = field(1, b"x") + field(2, b"y") + field(4, b"Identity")
    return field(7, field(1, node) + field(5, tensor))  # ModelProto.graph{node, initializer}


def _bundle_seed() -> bytes:
    art = SCRATCH / "seed-artifact"
    (art / "sub").mkdir(parents=True, exist_ok=True)
    plan = {"format": "onnx", "task": "embeddings", "runtime": "onnxruntime", "quantization": "int8"}
    (art / "manifest.json").write_text(json.dumps({"plan": plan}))
    (art / "model.onnx").write_bytes(bytes(range(256)) * 4)
    (art / "sub" / "tokenizer.json").write_text("{}")
    target = {"name": "x86-64-v3", "arch": "x86_64"}
    index = bundle.make_index(KEY, "tiny", target, bundle.describe(art))
    return b"".join(bundle.BundleWriter(art, index).chunks())


def _parse_gguf(path: Path) -> None:
    gguf_header.read_header(path)
    gguf_header.read_header(path, keep_arrays=True)


def _parse_safetensors(path: Path) -> None:
    safetensors_header.check(path)


def _parse_onnx(path: Path) -> None:
    onnx_external.check(path, SCRATCH)


def _parse_bundle(path: Path) -> None:
    info = bundle.verify(path, bundle.Caps(total_bytes=1 << 20, file_bytes=1 << 20, files=16))
    dest = Path(tempfile.mkdtemp(dir=SCRATCH))
    try:
        bundle.extract(path, info, dest)
        for p in dest.rglob("*"):  # whatever was accepted unpacked inside its directory, as regular files
            assert p.resolve().is_relative_to(dest.resolve()), p
            assert p.is_dir() or (p.is_file() and not p.is_symlink()), p
    finally:
        shutil.rmtree(dest, ignore_errors=True)


TARGETS: dict[str, tuple[Callable[[Path], None], Callable[[], bytes], str]] = {
    "gguf": (_parse_gguf, _gguf_seed, "m.gguf"),
    "safetensors": (_parse_safetensors, _safetensors_seed, "m.safetensors"),
    "onnx": (_parse_onnx, _onnx_seed, "model.onnx"),
    "bundle": (_parse_bundle, _bundle_seed, "b.tursi"),
}


def main() -> None:
    name = sys.argv[1]
    parse, seed, filename = TARGETS[name]
    (SCRATCH / "weights.bin").write_bytes(bytes(64))  # the file the ONNX seed's external data names
    corpus = SCRATCH / f"corpus-{name}"
    corpus.mkdir(exist_ok=True)
    (corpus / "seed").write_bytes(seed())
    path = SCRATCH / filename

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        try:
            parse(path)
        except TursiError:
            pass  # a clear, documented refusal

    crashes = os.environ.get("TURSI_FUZZ_CRASHES", str(SCRATCH))  # where libFuzzer writes a crashing input
    flags = [f"-artifact_prefix={crashes.rstrip('/')}/{name}-", *sys.argv[2:]]
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
