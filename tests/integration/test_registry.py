"""Artifacts to and from a real OCI registry (Distribution, TLS, htpasswd): a GGUF as a Docker model-spec artifact
and an ONNX artifact in Tursi's own types; a second push uploads nothing; a pull into another cache gets the same
bytes and manifest, by tag and by digest, and downloads nothing when it has them; a wrong password and a blob
corrupted in the registry's storage are refused, with nothing kept."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import DaemonProc, make_env, stop_everything_in
from tests.integration.registry_server import PASSWORD, USER, Registry, TokenService
from tursi.core.errors import DigestMismatch, RegistryUnauthorized
from tursi.formats.gguf_header import read_header
from tursi.registry.artifacts import (
    CHAT_TEMPLATE_LAYER,
    GGUF_LAYER,
    LICENSE_LAYER,
    MODEL_CONFIG,
    TURSI_CONFIG,
    Pulled,
    pull_artifact,
    push_artifact,
)
from tursi.registry.client import RegistryClient
from tursi.registry.reference import Reference, parse_reference


@pytest.fixture(scope="module")
def gguf_artifact(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """The bundled SmolLM2 as a cached artifact, made by a real tursid (`up` then `down`)."""
    env = make_env(tmp_path_factory.mktemp("gguf-artifact") / "home")
    daemon = DaemonProc(env).start()
    try:
        env.cli("up", str(smollm2_gguf), "--name", "seed", "--ctx-size", "256", check=True)
        env.cli("down", "seed", check=True)
    finally:
        daemon.terminate()
        stop_everything_in(env.home)
    (artifact,) = [d for d in (env.home / "artifacts").iterdir() if (d / "manifest.json").is_file()]
    return artifact


@pytest.fixture(scope="module")
def onnx_artifact(tiny_bert_artifacts: Path) -> Path:
    (artifact,) = [d for d in tiny_bert_artifacts.iterdir() if (d / "manifest.json").is_file()]
    return artifact


def client(reg: Registry, password: str = PASSWORD) -> RegistryClient:
    return RegistryClient(reg.netloc, USER, password, ca_pem=reg.cafile.read_text())


def blob(reg: Registry, ref: Reference, descriptor: dict) -> bytes:
    buf = io.BytesIO()
    client(reg).fetch_blob(ref.repository, descriptor["digest"], descriptor["size"], buf)
    return buf.getvalue()


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.mark.parametrize("kind", ["gguf", "onnx"])
def test_push_then_pull_elsewhere_and_a_second_push_uploads_nothing(
    registry: Registry,
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    artifact: Path = request.getfixturevalue(f"{kind}_artifact")
    ref = parse_reference(f"{registry.netloc}/models/{kind}:v1")
    first = push_artifact(client(registry), ref, artifact)
    assert first.blobs_uploaded >= 2  # the config and the model at least
    again = push_artifact(client(registry), ref, artifact)
    assert (again.blobs_uploaded, again.bytes_uploaded) == (0, 0)
    assert again.blobs_skipped == first.blobs_uploaded + first.blobs_skipped
    assert again.digest == first.digest
    print(
        f"\n{kind}: first push {first.blobs_uploaded} blobs / {first.bytes_uploaded} bytes; again: "
        f"{again.blobs_uploaded} blobs / {again.bytes_uploaded} bytes, {again.blobs_skipped} already there"
    )

    body, media_type, digest = client(registry).get_manifest(ref.repository, "v1")
    doc = json.loads(body)
    assert digest == first.digest
    if kind == "gguf":  # Docker's model-spec, as Docker Model Runner reads it
        assert doc["config"]["mediaType"] == MODEL_CONFIG
        assert [layer["mediaType"] for layer in doc["layers"]] == [GGUF_LAYER, CHAT_TEMPLATE_LAYER]
        config = json.loads(blob(registry, ref, doc["config"]))
        assert config["config"]["format"] == "gguf"
        assert config["config"]["size"] == f"{(artifact / 'model.gguf').stat().st_size / 2**20:.2f} MiB"
        assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]
        template = read_header(artifact / "model.gguf").metadata["tokenizer.chat_template"]
        assert blob(registry, ref, doc["layers"][1]).decode() == template  # SmolLM2's ChatML, as a Jinja layer
    else:
        assert doc["config"]["mediaType"] == TURSI_CONFIG

    for pointer in ("v1", first.digest):  # by tag, then by digest
        cache = tmp_path / f"cache-{pointer[:6]}"
        by = parse_reference(f"{registry.netloc}/models/{kind}" + (f"@{pointer}" if ":" in pointer else f":{pointer}"))
        pulled = pull_artifact(client(registry), by, cache)
        key = str(pulled.key)
        assert pulled.downloaded
        assert digests(cache / key) == digests(artifact)
        assert json.loads((cache / key / "manifest.json").read_text()) == json.loads(
            (artifact / "manifest.json").read_text()
        )
        again_client = client(registry)
        assert pull_artifact(again_client, by, cache) == Pulled(key, None, False)
        assert again_client.traffic.bytes_downloaded < 100_000  # the manifest and config only, no model


def test_the_source_license_goes_up_as_a_model_spec_license_layer_and_comes_back(
    registry: Registry, gguf_artifact: Path, tmp_path: Path
) -> None:
    """An artifact built from a folder with a LICENSE carries it (files.license); push gives it Docker's license
    media type, and pull writes it back, while the chat template layer (derived from the GGUF) writes nothing."""
    artifact = tmp_path / "with-license"
    shutil.copytree(gguf_artifact, artifact)
    (artifact / "LICENSE").write_text("Apache License, Version 2.0\n")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["license"] = "LICENSE"
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    ref = parse_reference(f"{registry.netloc}/models/licensed:v1")
    push_artifact(client(registry), ref, artifact)
    doc = json.loads(client(registry).get_manifest(ref.repository, "v1")[0])
    media = {layer["mediaType"]: layer for layer in doc["layers"]}
    assert set(media) == {GGUF_LAYER, LICENSE_LAYER, CHAT_TEMPLATE_LAYER}
    assert blob(registry, ref, media[LICENSE_LAYER]) == b"Apache License, Version 2.0\n"
    pulled = pull_artifact(client(registry), ref, tmp_path / "cache")
    assert digests(tmp_path / "cache" / str(pulled.key)) == digests(artifact)  # LICENSE and model.gguf, nothing else


def test_a_wrong_password_is_refused_clearly(registry: Registry, onnx_artifact: Path) -> None:
    with pytest.raises(RegistryUnauthorized, match="refused the credentials"):
        push_artifact(client(registry, "not-the-password"), parse_reference(f"{registry.netloc}/x/y:z"), onnx_artifact)


def test_a_blob_corrupted_in_the_registry_is_refused_and_nothing_is_kept(
    registry: Registry,
    onnx_artifact: Path,
    tmp_path: Path,
) -> None:
    ref = parse_reference(f"{registry.netloc}/models/corrupt:v1")
    push_artifact(client(registry), ref, onnx_artifact)
    doc = json.loads(client(registry).get_manifest(ref.repository, "v1")[0])
    biggest = max(doc["layers"], key=lambda layer: layer["size"])
    blob = registry.blob_file(biggest["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved = blob.read_bytes()
    blob.write_bytes(bytes(data))
    try:
        cache = tmp_path / "cache"
        with pytest.raises(DigestMismatch) as caught:
            pull_artifact(client(registry), ref, cache)
        assert caught.value.code == "digest_mismatch"
        assert [p for p in cache.rglob("*") if p.is_file()] == []  # no artifact, no staging, no partial kept
        print(f"\none byte flipped in the registry's storage: {caught.value.code}: {caught.value}")
    finally:
        blob.write_bytes(saved)
    pulled = pull_artifact(client(registry), ref, tmp_path / "cache")  # the next pull starts over, cleanly
    assert pulled.downloaded
    assert digests(tmp_path / "cache" / str(pulled.key)) == digests(onnx_artifact)


def test_an_interrupted_pull_resumes_where_it_stopped(registry: Registry, gguf_artifact: Path, tmp_path: Path) -> None:
    """What a pull cut short left (the first part of the GGUF) is kept: the next pull asks only for the rest
    (Range), and the whole is still checked; a partial that is wrong is refused and gone, and the next starts over."""
    ref = parse_reference(f"{registry.netloc}/models/resume:v1")
    push_artifact(client(registry), ref, gguf_artifact)
    doc = json.loads(client(registry).get_manifest(ref.repository, "v1")[0])
    layer = doc["layers"][0]
    cache = tmp_path / "cache"
    partial = cache / ".partial" / layer["digest"].removeprefix("sha256:")
    partial.parent.mkdir(parents=True)
    model = gguf_artifact / "model.gguf"
    half = layer["size"] // 2
    partial.write_bytes(model.read_bytes()[:half])  # as a pull killed halfway leaves it
    resumed = client(registry)
    pulled = pull_artifact(resumed, ref, cache)
    assert pulled.downloaded
    assert digests(cache / str(pulled.key)) == digests(gguf_artifact)
    assert resumed.traffic.bytes_downloaded < layer["size"] - half + 100_000  # the rest, not the whole
    print(f"\nresumed: {resumed.traffic.bytes_downloaded} bytes fetched for a {layer['size']}-byte GGUF half there")

    shutil.rmtree(cache)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * half)  # a partial that is not the blob's start
    with pytest.raises(DigestMismatch):
        pull_artifact(client(registry), ref, cache)
    assert not partial.exists()
    assert pull_artifact(client(registry), ref, cache).downloaded


def test_token_auth_as_docker_hub_speaks_it(
    token_registry: tuple[Registry, TokenService], onnx_artifact: Path, tmp_path: Path
) -> None:
    """Bearer tokens from the registry's token service, one per scope: push asks for pull,push on its repository,
    pull for pull; wrong credentials are refused by the token service."""
    registry, service = token_registry
    ref = parse_reference(f"{registry.netloc}/team/embed:v1")
    pushed = push_artifact(client(registry), ref, onnx_artifact)
    assert pushed.blobs_uploaded >= 2

    def asked() -> set[tuple[str, frozenset[str]]]:  # the registry's challenge names the actions in any order
        return {(s.rsplit(":", 1)[0], frozenset(s.rsplit(":", 1)[1].split(","))) for s in service.scopes_asked}

    assert ("repository:team/embed", frozenset({"pull", "push"})) in asked()
    pulled = pull_artifact(client(registry), ref, tmp_path / "cache")
    assert digests(tmp_path / "cache" / str(pulled.key)) == digests(onnx_artifact)
    assert ("repository:team/embed", frozenset({"pull"})) in asked()
    with pytest.raises(RegistryUnauthorized, match="token service refused"):
        pull_artifact(client(registry, "wrong"), ref, tmp_path / "other")
