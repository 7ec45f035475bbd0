"""Tursi's registry client against a malicious registry (tests/hostile_registry.py, a real HTTP server on loopback):
what a registry chooses (digests, keys, titles, sizes, realms, redirects, speed) is checked before it is used, and
each refusal is a RegistryFailed / RegistryMalformed (502) or DigestMismatch (422) with nothing written outside the
cache's own folders and nothing kept in it. The well-behaved path against the real Distribution registry is
tests/integration/test_registry.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.hostile_registry import HostileRegistry, digest_of
from tursi.core.errors import DigestMismatch, RegistryFailed, RegistryMalformed
from tursi.registry import client as client_module
from tursi.registry.artifacts import GGUF_LAYER, TITLE, pull_artifact, pulled_key
from tursi.registry.client import RegistryClient
from tursi.registry.reference import parse_reference

REAL_KEY = "ab" * 16  # the key a conversion of a public model would have


def tursi_manifest(key: str = REAL_KEY) -> dict[str, Any]:
    plan = {"task": "chat", "format": "gguf", "quantization": "Q4_1", "runtime": "llama"}
    return {"key": key, "plan": plan, "files": {"model": "model.gguf"}, "size_bytes": 4}


def serve_artifact(
    reg: HostileRegistry, layers: list[dict[str, Any]] | None = None, key: str = REAL_KEY, tag: str = "v1"
) -> str:
    """A Tursi artifact (config naming ``key``, one GGUF layer unless ``layers``) under ``tag``; its digest."""
    config = reg.add_blob(json.dumps({"tursi": tursi_manifest(key)}).encode())
    if layers is None:
        layers = [{**reg.add_blob(b"GGUF"), "mediaType": GGUF_LAYER, "annotations": {TITLE: "model.gguf"}}]
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config}
    return reg.add_manifest({**doc, "layers": layers}, tag)


def pull(reg: HostileRegistry, cache: Path, **kw: Any) -> Any:
    client = RegistryClient(reg.netloc, ca_pem=reg.ca_pem, plain_http=reg.tls_dir is None, **kw)
    return pull_artifact(client, parse_reference(f"{reg.netloc}/models/x:v1"), cache)


def published(cache: Path) -> list[str]:
    """The artifacts in ``cache`` (staging folders, partial downloads and locks are dot names)."""
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) if cache.is_dir() else []


@pytest.fixture
def reg() -> Any:
    with HostileRegistry() as served:
        yield served


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "uppercase", "sha512"])
def test_a_layer_digest_that_is_not_sha256_hex_is_refused_before_any_file_is_touched(
    reg: HostileRegistry, tmp_path: Path, kind: str
) -> None:
    """Defect 1 (issue 28): the digest used to be the partial download's file name, so ``sha256:/some/file``
    truncated that file and wrote the registry's bytes into it."""
    victim = tmp_path / "victim"
    victim.write_text("the user's file")
    digest = {
        "absolute": f"sha256:{victim}",
        "dotdot": "sha256:../../victim",
        "uppercase": "sha256:" + "A" * 64,
        "sha512": "sha512:" + "a" * 128,
    }[kind]
    reg.blobs[digest] = b"GGUF"
    serve_artifact(reg, [{"mediaType": GGUF_LAYER, "digest": digest, "size": 4, "annotations": {TITLE: "model.gguf"}}])
    cache = tmp_path / "artifacts"
    with pytest.raises(RegistryMalformed, match="digest"):
        pull(reg, cache)
    assert victim.read_text() == "the user's file"
    assert published(cache) == []
    assert not any(path.endswith(digest) for _, path, _ in reg.seen)  # never even asked for


def test_a_pull_never_lands_under_the_key_the_registry_names(reg: HostileRegistry, tmp_path: Path) -> None:
    """Defect 2 (issue 28): the config's ``tursi.key`` named a public model's content key; after `rmi` of the real
    artifact a pull planted the registry's files under it, and `tursi up` served them as the cached conversion."""
    manifest_digest = serve_artifact(reg, key=REAL_KEY)
    cache = tmp_path / "artifacts"
    pulled = pull(reg, cache)
    assert pulled.key == pulled_key(manifest_digest) != REAL_KEY
    assert not (cache / REAL_KEY).exists()
    assert (cache / pulled.key / "model.gguf").read_bytes() == b"GGUF"
    again = pull(reg, cache)  # the same content is found again under the same derived key
    assert (again.key, again.downloaded) == (pulled.key, False)
    other = HostileRegistry()
    with other:  # another registry claiming the same key with other bytes gets a key of its own
        other_digest = serve_artifact(
            other, [{**other.add_blob(b"EVIL"), "mediaType": GGUF_LAYER, "annotations": {TITLE: "model.gguf"}}]
        )
        theirs = pull(other, cache)
    assert theirs.key == pulled_key(other_digest) not in (pulled.key, REAL_KEY)
    assert (cache / pulled.key / "model.gguf").read_bytes() == b"GGUF"


def _layer(reg: HostileRegistry, title: str, data: bytes = b"x") -> dict[str, Any]:
    return {**reg.add_blob(data), "mediaType": "application/vnd.tursi.file.v1", "annotations": {TITLE: title}}


@pytest.mark.parametrize(
    "case",
    [
        "not-json",
        "json-list",
        "no-config",
        "config-not-json",
        "negative-size",
        "string-size",
        "layers-not-list",
        "long-title",
        "file-where-a-folder-goes",
        "dot-title",
        "annotations-not-strings",
        "index-entries-not-list",
    ],
)
def test_malformed_registry_answers_are_a_clear_502(reg: HostileRegistry, tmp_path: Path, case: str) -> None:
    """Low (issue 28): each of these was a 500 with a traceback (KeyError, TypeError, OSError ENAMETOOLONG,
    NotADirectoryError). Now a RegistryMalformed naming what is wrong, and the cache holds nothing."""
    gguf = {**reg.add_blob(b"GGUF"), "mediaType": GGUF_LAYER, "annotations": {TITLE: "model.gguf"}}
    config = reg.add_blob(json.dumps({"tursi": tursi_manifest()}).encode())
    base = {"schemaVersion": 2, "config": config, "layers": [gguf]}
    docs: dict[str, Any] = {
        "json-list": [base],
        "no-config": {"schemaVersion": 2, "layers": [gguf]},
        "config-not-json": {**base, "config": reg.add_blob(b"\xff{not json")},
        "negative-size": {**base, "layers": [{**gguf, "size": -1}]},
        "string-size": {**base, "layers": [{**gguf, "size": "4"}]},
        "layers-not-list": {**base, "layers": {"a": gguf}},
        "long-title": {**base, "layers": [gguf, _layer(reg, "a" * 300)]},
        "file-where-a-folder-goes": {**base, "layers": [gguf, _layer(reg, "tok"), _layer(reg, "tok/vocab.txt", b"y")]},
        "dot-title": {**base, "layers": [gguf, _layer(reg, "./x")]},
        "annotations-not-strings": {**base, "layers": [{**gguf, "annotations": {TITLE: ["model.gguf"]}}]},
        "index-entries-not-list": {"schemaVersion": 2, "manifests": {"a": 1}},
    }
    if case == "not-json":
        reg.manifests["v1"] = b"\x00not json"
    else:
        reg.manifests["v1"] = json.dumps(docs[case]).encode()
    cache = tmp_path / "artifacts"
    client = RegistryClient(reg.netloc, plain_http=True)
    from tursi.core.hardware import detect

    with pytest.raises(RegistryMalformed):
        pull_artifact(client, parse_reference(f"{reg.netloc}/models/x:v1"), cache, detect())
    assert published(cache) == []


def test_a_body_shorter_than_announced_is_refused_and_nothing_kept(reg: HostileRegistry, tmp_path: Path) -> None:
    """Low (issue 28): a Content-Length lie was an IncompleteRead traceback (500)."""
    data = b"GGUF" * 1000
    digest = digest_of(data)

    async def liar(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        await resp.write(data[:100])
        if request.transport is not None:
            request.transport.close()  # hang up 3,900 bytes early
        return resp

    reg.blobs[digest] = liar
    serve_artifact(reg, [{"mediaType": GGUF_LAYER, "digest": digest, "size": len(data), "annotations": {}}])
    cache = tmp_path / "artifacts"
    with pytest.raises((RegistryFailed, DigestMismatch)):
        pull(reg, cache)
    assert not (cache / pulled_key(digest_of(reg.manifests["v1"]))).exists()  # type: ignore[arg-type]


def test_an_oversized_manifest_is_refused_unread(reg: HostileRegistry, tmp_path: Path) -> None:
    """Medium 6 (issue 28): a 300 MiB manifest took tursid from 44 to 659 MB. One over 4 MiB (Distribution's own
    limit) is refused from its Content-Length, or after 4 MiB when it does not announce one."""

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse it by
        await resp.prepare(request)
        for _ in range(300):
            await resp.write(b" " * (1 << 20))
        return resp

    reg.manifests["v1"] = huge
    started = time.monotonic()
    with pytest.raises(RegistryMalformed, match="cap"):
        pull(reg, tmp_path / "artifacts")
    print(f"\n300 MiB manifest refused after {time.monotonic() - started:.2f} s")
    big = json.dumps({"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "0" * 64, "size": 1}] * 200_000})
    reg.manifests["v1"] = big.encode()
    with pytest.raises(RegistryMalformed, match="cap"):
        pull(reg, tmp_path / "artifacts")


def test_a_stalled_blob_ends_the_pull_at_the_speed_floor_and_the_deadline(
    reg: HostileRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Medium 6 (issue 28): a blob sent 1 byte every 59 s held the pull (and the thread) forever. The floor (1 KiB
    per minute) and the pull's deadline are shortened here to keep the test short; the code path is the same."""
    data = b"GGUF" * 100

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        for i in range(len(data)):
            await resp.write(data[i : i + 1])
            await asyncio.sleep(0.2)
        return resp

    layer = {"mediaType": GGUF_LAYER, "digest": digest_of(data), "size": len(data), "annotations": {}}
    reg.blobs[digest_of(data)] = trickle
    serve_artifact(reg, [layer])
    monkeypatch.setattr(client_module, "SLOW_WINDOW_S", 1.0)
    started = time.monotonic()
    with pytest.raises(RegistryFailed, match="stalled"):
        pull(reg, tmp_path / "a")
    assert time.monotonic() - started < 10
    monkeypatch.setattr(client_module, "SLOW_WINDOW_S", 3600.0)
    started = time.monotonic()
    with pytest.raises(RegistryFailed, match="deadline"):
        pull(reg, tmp_path / "b", deadline=time.monotonic() + 1.5)
    assert time.monotonic() - started < 10


def test_two_pulls_of_one_blob_at_once_both_get_it_whole(reg: HostileRegistry, tmp_path: Path) -> None:
    """Low (issue 28): two pulls of one blob shared one ``.partial`` file (one failed with a 500; a corrupted file
    could be published). Now they take turns on it."""
    data = bytes(range(256)) * 4096  # 1 MiB, sent slowly enough that the two overlap
    digest = digest_of(data)

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        for i in range(0, len(data), 1 << 16):
            await resp.write(data[i : i + (1 << 16)])
            await asyncio.sleep(0.02)
        return resp

    reg.blobs[digest] = slow
    serve_artifact(reg, [{"mediaType": GGUF_LAYER, "digest": digest, "size": len(data), "annotations": {}}])
    caches = [tmp_path / "shared"] * 2
    results: list[Any] = []
    threads = [threading.Thread(target=lambda c=c: results.append(_try(lambda: pull(reg, c)))) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not isinstance(r, BaseException) for r in results), results
    (key,) = {r.key for r in results}
    assert (tmp_path / "shared" / key / "model.gguf").read_bytes() == data


def _try(fn: Any) -> Any:
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - the test reports it
        return e


def test_credentials_never_go_to_a_token_realm_over_plain_http(tmp_path: Path) -> None:
    """Medium 5 (issue 28): ``WWW-Authenticate: Bearer realm="http://other-host/token"`` made the pull and
    `tursi login` send the password in clear text to that host. A registry on TLS whose realm is plain HTTP is
    refused before anything is sent there; so is a plain-HTTP registry pointing off loopback."""
    with HostileRegistry(host="127.0.0.2") as realm, HostileRegistry(tls_dir=tmp_path / "tls") as reg:

        async def token(request: web.Request) -> web.Response:
            return web.json_response({"token": "t"})

        realm.routes["/token"] = token
        reg.challenge = f'Bearer realm="{realm.url}/token",service="x"'
        serve_artifact(reg)
        client = RegistryClient(reg.netloc, "user", "the-password", ca_pem=reg.ca_pem)
        with pytest.raises(RegistryFailed, match="over HTTPS only"):
            pull_artifact(client, parse_reference(f"{reg.netloc}/models/x:v1"), tmp_path / "a")
        assert realm.seen == []
    with HostileRegistry() as plain:
        plain.challenge = 'Bearer realm="http://registry-auth.example/token",service="x"'
        client = RegistryClient(plain.netloc, "user", "the-password", plain_http=True)
        with pytest.raises(RegistryFailed, match="over HTTPS only"):
            client.ping()


def test_a_blob_redirect_is_followed_on_the_same_scheme_without_the_credentials(tmp_path: Path) -> None:
    """Low (issue 28): Docker Hub and GHCR answer a blob with a 307 to a CDN; that was refused. Now it is followed
    (on the registry's scheme, not handing the CDN the registry's Authorization), and the bytes are still checked."""
    data = b"GGUF-from-the-cdn"
    with HostileRegistry(host="127.0.0.3") as cdn, HostileRegistry() as reg:

        async def signed(request: web.Request) -> web.Response:
            return web.Response(body=data)

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=307, headers={"Location": f"{cdn.url}/signed?sig=abc"})

        cdn.routes["/signed"] = signed
        reg.blobs[digest_of(data)] = redirect
        serve_artifact(
            reg, [{"mediaType": GGUF_LAYER, "digest": digest_of(data), "size": len(data), "annotations": {}}]
        )
        reg.challenge = None
        client = RegistryClient(reg.netloc, "user", "pw", plain_http=True)
        client._basic = True  # the registry asked for Basic earlier: the registry gets it, the CDN must not
        pulled = pull_artifact(client, parse_reference(f"{reg.netloc}/models/x:v1"), tmp_path / "a")
        assert (tmp_path / "a" / str(pulled.key) / "model.gguf").read_bytes() == data
        assert [(m, p, a) for m, p, a in cdn.seen] == [("GET", "/signed?sig=abc", None)]
        assert any(a and a.startswith("Basic ") for _, _, a in reg.seen)

        async def to_https(request: web.Request) -> web.Response:
            return web.Response(status=307, headers={"Location": "https://127.0.0.3:1/x"})

        reg.blobs[digest_of(data)] = to_https
        with pytest.raises(RegistryFailed, match="redirect"):
            pull_artifact(client, parse_reference(f"{reg.netloc}/models/x:v1"), tmp_path / "b")


@pytest.mark.parametrize("registry", ["10.0.0.2:5000", "registry.lan", "registry.lan:80"])
def test_plain_http_is_for_a_registry_on_loopback_only(registry: str) -> None:
    """`tursi login --plain-http` (and every pull or push) to a registry off loopback would send the password and
    the artifacts unprotected: refused before anything is sent, in the client both the CLI and tursid use."""
    with pytest.raises(RegistryFailed, match="loopback only"):
        RegistryClient(registry, "user", "the-password", plain_http=True)
    RegistryClient("127.0.0.1:5000", "user", "the-password", plain_http=True)  # loopback: fine
