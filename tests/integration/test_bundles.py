"""Bundles: `tursi build --target` on one daemon, `load` on another (a second TURSI_HOME), `up` by key with no
conversion; tampering, unsafe members, caps and a target that does not fit are refused before anything is kept."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import embed
from tursi.core.errors import BundleTooLarge, DigestMismatch, UnsafeBundle, UnsafeModel
from tursi.formats import bundle as tursi_bundle

TEXTS = ["a bundle moves a model", "from a workstation to a device"]


def artifact_entries(env: Env) -> list[str]:
    root = env.home / "artifacts"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def rewrite(src: Path, dst: Path, edit: object) -> None:
    """Copy a bundle member by member, letting ``edit(info, data)`` change or add members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            for info, blob in edit(m, data):  # type: ignore[operator]
                tout.addfile(info, io.BytesIO(blob) if blob is not None else None)


@pytest.fixture(scope="module")
def built(
    module_env: Env, module_daemon: DaemonProc, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, np.ndarray]:
    """The workstation side, once for the module: tiny_bert built for x86-64-v3 and its embeddings served here.
    The tests only read the bundle (their tampered copies go to their own folders)."""
    out = tmp_path_factory.mktemp("bundle") / "tiny.tursi"
    proc = module_env.cli("build", str(tiny_bert), "--target", "x86-64-v3", "-o", str(out), check=True)
    assert "for x86-64-v3" in proc.stdout
    assert "writing" in proc.stderr  # byte progress on stderr
    up = module_env.cli("up", str(tiny_bert), "--target", "x86-64-v3", "--name", "here", check=True)
    assert "using cached artifact" in up.stderr  # the build filled the cache: same plan, same key
    return out, embed(up.stdout.split(": ", 1)[1].strip(), TEXTS)


def test_build_load_up_on_another_daemon(device_env: Env, built: tuple[Path, np.ndarray]) -> None:
    bundle, reference = built
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("tursi-bundle.json").read())  # type: ignore[union-attr]
        assert names[0] == "tursi-bundle.json"
        for f in index["files"]:
            data = tar.extractfile("artifact/" + f["path"]).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
            assert len(data) == f["size"]
        manifest = json.loads(tar.extractfile("artifact/manifest.json").read())  # type: ignore[union-attr]
    assert index["target"]["name"] == "x86-64-v3"
    assert {"plan", "source", "tools"} <= set(manifest)
    assert "target profile x86-64-v3" in manifest["plan"]["reasons"]["hardware"]

    DaemonProc(device_env).start()
    loaded = device_env.cli("load", str(bundle), check=True)
    key = tursi_bundle.local_key(index["key"])  # loaded artifacts live apart from what a conversion here would make
    assert f"as artifact {key[:12]}" in loaded.stdout
    again = device_env.cli("load", str(bundle), check=True)
    assert "already present" in again.stdout
    up = device_env.cli("up", key[:12], "--name", "dev", check=True)
    assert "no conversion" in up.stderr
    assert not list((device_env.home / "logs").glob("convert-*"))  # nothing was converted on the device
    vectors = embed(up.stdout.split(": ", 1)[1].strip(), TEXTS)
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    (dep,) = device_env.ps()
    assert (dep["name"], dep["format"], dep["artifact_key"]) == ("dev", "onnx", key)
    # save exports the same artifact again; loading it where it exists is a no-op
    saved = bundle.with_name("dev.tursi")
    device_env.cli("save", "dev", "-o", str(saved), check=True)
    with tarfile.open(saved) as tar:
        again_index = json.loads(tar.extractfile("tursi-bundle.json").read())  # type: ignore[union-attr]
    assert again_index["files"] == index["files"]
    assert again_index["key"] == index["key"]  # it travels on under its bundle's key
    assert "already present" in device_env.cli("load", str(saved), check=True).stdout
    # push needs a remote daemon
    push = device_env.cli("push", str(bundle))
    assert push.returncode == 64
    assert "remote tursid" in push.stderr


def test_tampered_or_unsafe_bundles_are_refused_with_nothing_kept(
    device_env: Env, built: tuple[Path, np.ndarray], tiny_bert: Path, tmp_path: Path
) -> None:
    bundle, _ = built
    DaemonProc(device_env).start()

    def flip(m: tarfile.TarInfo, data: bytes):  # one byte of the model changed
        if m.name == "artifact/model.onnx":
            data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
        yield m, data

    def slip(m: tarfile.TarInfo, data: bytes):  # an extra member that climbs out
        yield m, data
        if m.name == "artifact/manifest.json":
            evil = tarfile.TarInfo("artifact/../../evil.sh")
            evil.size = 3
            yield evil, b"hi\n"

    def link(m: tarfile.TarInfo, data: bytes):
        if m.name == "artifact/config.json":
            sym = tarfile.TarInfo("artifact/config.json")
            sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
            yield sym, None
        else:
            yield m, data

    cases = {"flip": (flip, "digest_mismatch"), "slip": (slip, "leaves the bundle"), "link": (link, "symbolic link")}
    for label, (edit, message) in cases.items():
        bad = tmp_path / f"{label}.tursi"
        rewrite(bundle, bad, edit)
        proc = device_env.cli("load", str(bad))
        assert proc.returncode == 65, (label, proc.stderr)
        assert message in proc.stderr or label == "flip", (label, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert artifact_entries(device_env) == [], label  # nothing written, no spool left behind
    assert not (tmp_path.parent / "evil.sh").exists()
    # the API says which check failed, with stable codes
    client = device_env.client
    for label, cls in (("flip", DigestMismatch), ("slip", UnsafeBundle)):
        path = tmp_path / f"{label}.tursi"
        with path.open("rb") as fh, pytest.raises(cls):
            client.upload("/v1/artifacts/load", fh, path.stat().st_size)
    with pytest.raises(UnsafeBundle, match="plain tar"):
        client.upload("/v1/artifacts/load", io.BytesIO(b"not a tar at all" * 64), 1024)
    assert artifact_entries(device_env) == []
    assert device_env.client.healthy()  # tursid kept serving throughout
    check_no_planting(device_env, bundle, tiny_bert, tmp_path)  # a tampered bundle that verifies: kept apart


def planted_copy(bundle: Path, out: Path) -> Path:
    """The bundle with other files under the same key, its digests fixed so that it verifies."""
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile("artifact/manifest.json").read())  # type: ignore[union-attr]
    manifest["source"]["reference"] = "planted\x1b]0;owned\x07\x1b[2J"
    planted = json.dumps(manifest).encode()

    def swap(m: tarfile.TarInfo, data: bytes):
        if m.name == "tursi-bundle.json":
            index = json.loads(data)
            for f in index["files"]:
                if f["path"] == "manifest.json":
                    f["size"], f["sha256"] = len(planted), hashlib.sha256(planted).hexdigest()
            data = json.dumps(index).encode()
        elif m.name == "artifact/manifest.json":
            data = planted
        m.size = len(data)
        yield m, data

    rewrite(bundle, out, swap)
    return out


def check_no_planting(device_env: Env, bundle: Path, tiny_bert: Path, tmp_path: Path) -> None:
    """A bundle names its own key: one claiming the key `tursi up MODEL` computes loads apart from conversions,
    so the up converts afresh instead of serving the loaded files; what the bundle says prints without escapes."""
    with tarfile.open(bundle) as tar:
        claimed = json.loads(tar.extractfile("tursi-bundle.json").read())["key"]  # type: ignore[union-attr]
    planted = planted_copy(bundle, tmp_path / "planted.tursi")
    with planted.open("rb") as fh:
        loaded = device_env.client.upload("/v1/artifacts/load", fh, planted.stat().st_size)
    up = device_env.cli("up", str(tiny_bert), "--target", "x86-64-v3", "--name", "fresh", check=True)
    assert "using cached artifact" not in up.stderr  # converted here, not the planted files
    dep = device_env.client.request("GET", "/v1/deployments/fresh")
    assert dep["artifact_key"] == claimed  # the key the bundle claimed is the conversion's, and holds its own files
    assert "planted" not in dep["manifest"]["source"]["reference"]
    assert (loaded["key"], loaded["bundle_key"]) == (tursi_bundle.local_key(claimed), claimed)
    images = device_env.cli("images", check=True)
    assert "planted]0;owned" in images.stdout
    assert "\x1b" not in images.stdout
    assert "\x07" not in images.stdout


def test_onnx_that_reads_outside_the_artifact_is_refused(
    device_env: Env, built: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """A bundle whose digests all match, but whose model.onnx points a weight at a file outside the artifact."""
    import onnx

    bundle, _ = built
    with tarfile.open(bundle) as tar:
        model = onnx.load_from_string(tar.extractfile("artifact/model.onnx").read())  # type: ignore[union-attr]
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    length = len(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../../../tursid.lock"), ("offset", "0"), ("length", str(length))):
        entry = weight.external_data.add()
        entry.key, entry.value = k, v
    evil = model.SerializeToString()

    def swap(m: tarfile.TarInfo, data: bytes):
        if m.name == "tursi-bundle.json":
            index = json.loads(data)
            for f in index["files"]:
                if f["path"] == "model.onnx":
                    f["size"], f["sha256"] = len(evil), hashlib.sha256(evil).hexdigest()
            data = json.dumps(index).encode()
        elif m.name == "artifact/model.onnx":
            data = evil
        m.size = len(data)
        yield m, data

    bad = tmp_path / "external.tursi"
    rewrite(bundle, bad, swap)
    DaemonProc(device_env).start()
    proc = device_env.cli("load", str(bad))
    assert proc.returncode == 65, proc.stderr
    assert "not a plain path inside the model's folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert artifact_entries(device_env) == []  # refused after unpacking to staging, before publishing
    with bad.open("rb") as fh, pytest.raises(UnsafeModel) as e:
        device_env.client.upload("/v1/artifacts/load", fh, bad.stat().st_size)
    assert e.value.code == "unsafe_model"
    assert device_env.client.healthy()


def test_size_cap_and_target_fit(
    module_env: Env, device_env: Env, built: tuple[Path, np.ndarray], tiny_bert: Path
) -> None:
    bundle, _ = built
    small = DaemonProc(type(device_env)(device_env.home, {**device_env.vars, "TURSI_MAX_BUNDLE_BYTES": "100000"}))
    small.start()
    with bundle.open("rb") as fh, pytest.raises(BundleTooLarge):  # 413 from Content-Length, before the body
        device_env.client.upload("/v1/artifacts/load", fh, bundle.stat().st_size)
    proc = device_env.cli("load", str(bundle))
    assert proc.returncode == 65
    assert "cap" in proc.stderr
    assert artifact_entries(device_env) == []
    small.terminate()

    rpi = bundle.with_name("rpi5.tursi")
    module_env.cli("build", str(tiny_bert), "--target", "rpi5", "-o", str(rpi), check=True)
    DaemonProc(device_env).start()
    refused = device_env.cli("load", str(rpi))
    assert refused.returncode == 65
    assert "built for aarch64 (rpi5), this device is x86_64" in refused.stderr
    assert "--force" in refused.stderr
    assert artifact_entries(device_env) == []
    forced = device_env.cli("load", str(rpi), "--force", check=True)
    assert "warning: built for aarch64" in forced.stderr
    # `tursi up FILE.tursi` loads and deploys in one step
    up = device_env.cli("up", str(bundle), "--name", "direct", check=True)
    assert "direct is ready" in up.stdout
    assert [d["name"] for d in device_env.ps()] == ["direct"]
