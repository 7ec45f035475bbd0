"""The artifact cache and bundle import against tursid's real application, in process (aiohttp's test server, real
SQLite, real files): uploads that would inflate or fill the disk, a bundle that claims a key already holding other
files, a damaged cache entry next to good ones, and rmi/prune removing both the folder and its database row."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tursi.core.hardware import HardwareProfile, detect_cached
from tursi.core.settings import Settings
from tursi.daemon.app import build_app, open_daemon
from tursi.daemon.context import Daemon
from tursi.formats import bundle

KEY = "c0ffee" * 5 + "ab"
PLAN = {"format": "gguf", "task": "chat", "runtime": "llama", "quantization": "Q4_0", "converter": "gguf-import"}
TAR = {"Content-Type": "application/x-tar"}


@pytest.fixture(scope="module")
def hardware(tmp_path_factory: pytest.TempPathFactory) -> HardwareProfile:
    return detect_cached(tmp_path_factory.mktemp("hw"))  # probed once for the module


@contextlib.asynccontextmanager
async def tursid(home: Path, hardware: HardwareProfile, **env: str) -> AsyncIterator[tuple[TestClient, Daemon]]:
    settings = Settings.load({"TURSI_HOME": str(home), **env})
    settings.ensure_dirs()
    daemon = open_daemon(settings, hardware)
    client = TestClient(TestServer(build_app(daemon, require_token=False)))
    await client.start_server()
    try:
        yield client, daemon
    finally:
        await client.close()
        daemon.store.close()


def run(home: Path, hardware: HardwareProfile, scenario: Callable[[TestClient, Daemon], Awaitable[Any]], **env: str):
    async def main() -> Any:
        async with tursid(home, hardware, **env) as (client, daemon):
            return await scenario(client, daemon)

    return asyncio.run(main())


def make_bundle(tmp: Path, target: dict[str, Any], model: bytes = b"GGUF" + bytes(2000), **manifest: Any) -> bytes:
    art = tmp / f"art-{hashlib.sha256(model + json.dumps(manifest).encode()).hexdigest()[:8]}"
    art.mkdir()
    (art / "model.gguf").write_bytes(model)
    body = {"plan": PLAN, "files": {"model": "model.gguf"}, "source": {"reference": "tiny"}, **manifest}
    (art / "manifest.json").write_text(json.dumps(body))
    index = bundle.make_index(KEY, "tiny", target, bundle.describe(art))
    return b"".join(bundle.BundleWriter(art, index).chunks())


def keys_in(daemon: Daemon) -> list[str]:
    return sorted(p.name for p in daemon.settings.artifacts_dir.iterdir() if not p.name.startswith("."))


def leftovers(daemon: Daemon) -> list[str]:
    return sorted(p.name for p in daemon.settings.artifacts_dir.glob(".tmp-*"))


def test_a_compressed_upload_is_refused_before_it_is_inflated(tmp_path: Path, hardware: HardwareProfile) -> None:
    packed = gzip.compress(make_bundle(tmp_path, hardware.to_dict()))

    async def scenario(client: TestClient, daemon: Daemon) -> None:
        headers = {**TAR, "Content-Encoding": "gzip"}
        resp = await client.post("/v1/artifacts/load", data=packed, headers=headers)
        body = await resp.json()
        assert resp.status == 415, body  # was 200: aiohttp inflated the body past every cap counted on the wire
        assert body["code"] == "unsupported_encoding"
        assert keys_in(daemon) == []
        assert leftovers(daemon) == []

    run(tmp_path / "home", hardware, scenario)


def test_an_upload_larger_than_the_free_space_is_507_before_spooling(tmp_path: Path, hardware: HardwareProfile) -> None:
    home = tmp_path / "home"
    home.mkdir()
    claimed = 2 * shutil.disk_usage(home).free  # allowed by the (raised) cap, but it cannot fit

    async def scenario(client: TestClient, daemon: Daemon) -> None:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(
            f"POST /v1/artifacts/load HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {claimed}\r\n\r\n".encode()
            + bytes(4096)
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=10)  # no answer at all before the fix
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")) if k == b"Content-Length"))
        body = json.loads(await reader.readexactly(length))
        writer.close()
        assert status.split()[1] == b"507", status
        assert body["code"] == "insufficient_storage"
        assert leftovers(daemon) == []

    run(home, hardware, scenario, TURSI_MAX_BUNDLE_BYTES=str(1 << 62))


def test_a_bundle_key_already_here_with_other_files_is_refused(tmp_path: Path, hardware: HardwareProfile) -> None:
    first = make_bundle(tmp_path, hardware.to_dict())
    other = make_bundle(tmp_path, hardware.to_dict(), model=b"GGUF" + b"\x01" * 2000)  # same key, other files

    async def scenario(client: TestClient, daemon: Daemon) -> None:
        loaded = await (await client.post("/v1/artifacts/load", data=first, headers=TAR)).json()
        resp = await client.post("/v1/artifacts/load", data=other, headers=TAR)
        body = await resp.json()
        assert resp.status == 409, body  # was 200 "already present", serving the first bundle's files as the second's
        assert body["code"] == "artifact_conflict"
        again = await (await client.post("/v1/artifacts/load", data=first, headers=TAR)).json()
        assert again["already_present"] is True  # the same files again are fine
        key = loaded["key"]
        assert key == bundle.local_key(KEY) != KEY  # the bundle's own key names nothing a conversion would use
        assert (loaded["bundle_key"], loaded["already_present"]) == (KEY, False)
        model = daemon.settings.artifacts_dir / key / "model.gguf"
        assert model.read_bytes() == b"GGUF" + bytes(2000)  # the first content stays, the second never landed
        assert leftovers(daemon) == []
        # exported again, the artifact keeps the key its bundle had: loading that bundle here is a no-op
        exported = await (await client.get(f"/v1/artifacts/{key}/bundle")).read()
        back = await (await client.post("/v1/artifacts/load", data=exported, headers=TAR)).json()
        assert (back["key"], back["already_present"]) == (key, True)

    run(tmp_path / "home", hardware, scenario)


def test_rmi_and_prune_remove_the_folder_and_the_row(tmp_path: Path, hardware: HardwareProfile) -> None:
    data = make_bundle(tmp_path, hardware.to_dict())

    async def scenario(client: TestClient, daemon: Daemon) -> None:
        key = (await (await client.post("/v1/artifacts/load", data=data, headers=TAR)).json())["key"]
        assert daemon.store.get_artifact(key) is not None
        resp = await client.delete(f"/v1/artifacts/{key[:8]}")
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["removed"] == [key]
        assert keys_in(daemon) == []
        assert leftovers(daemon) == []
        assert daemon.store.get_artifact(key) is None
        assert not (daemon.settings.artifacts_dir / ".loaded" / f"{key}.json").exists()
        await client.post("/v1/artifacts/load", data=data, headers=TAR)
        pruned = await (await client.post("/v1/artifacts/prune", headers={"Content-Type": "application/json"})).json()
        assert pruned["removed"] == [key]
        assert keys_in(daemon) == []
        assert leftovers(daemon) == []
        assert daemon.store.get_artifact(key) is None

    run(tmp_path / "home", hardware, scenario)


def test_a_damaged_entry_is_listed_as_such_and_never_breaks_the_others(
    tmp_path: Path, hardware: HardwareProfile
) -> None:
    """What a bundle with `"source": "x"` left behind before the schema check: every listing, rmi, prune, save
    and `up KEY` answered 500 until the file was deleted by hand."""
    data = make_bundle(tmp_path, hardware.to_dict())
    bad = "b" * 32

    async def scenario(client: TestClient, daemon: Daemon) -> None:
        good = (await (await client.post("/v1/artifacts/load", data=data, headers=TAR)).json())["key"]
        (daemon.settings.artifacts_dir / bad).mkdir()
        manifest = {"plan": PLAN, "files": {"model": "m.gguf"}, "source": "x"}
        (daemon.settings.artifacts_dir / bad / "manifest.json").write_text(json.dumps(manifest))
        resp = await client.get("/v1/artifacts")
        assert resp.status == 200, await resp.text()
        listed = {a["key"]: a for a in await resp.json()}
        assert listed[good]["damaged"] is None
        assert listed[good]["origin"] == "loaded"
        assert "source" in listed[bad]["damaged"]
        assert (await client.get(f"/v1/artifacts/{good}/bundle")).status == 200  # save still works
        refused = await client.get(f"/v1/artifacts/{bad}/bundle")
        assert (refused.status, (await refused.json())["code"]) == (422, "unsafe_bundle")
        assert (await client.delete(f"/v1/artifacts/{bad}")).status == 200
        pruned = await client.post("/v1/artifacts/prune", headers={"Content-Type": "application/json"})
        assert (await pruned.json())["removed"] == [good]

    run(tmp_path / "home", hardware, scenario)
