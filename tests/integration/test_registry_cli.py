"""The registry verbs end to end: `tursi login` (checked, kept 0600), `tag`, `push` (a second push uploads nothing),
and a second daemon (another "device") that pulls for itself: `tursi pull REF`, and `tursi up REF` with the
daemon's own credentials (`tursi login --daemon`) while its CLI has none. Real tursid processes, a real registry."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

from tests.conftest import CLI, DaemonProc, Env, make_env, stop_everything_in
from tests.integration.registry_server import PASSWORD, USER, Registry
from tests.integration.test_lifecycle import embed, post
from tursi.cli.render import human_size


def isolated(env: Env) -> Env:
    """The CLI's registry credentials and Docker's config inside the test's home, never the user's."""
    env.vars["XDG_CONFIG_HOME"] = str(env.home / "config")
    env.vars["DOCKER_CONFIG"] = str(env.home / "docker")
    return env


def login(env: Env, registry: Registry, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "login", registry.netloc, "-u", USER, "--password-stdin", "--ca-file", str(registry.cafile), *extra]
    return subprocess.run(argv, env=env.vars, input=password + "\n", capture_output=True, text=True, timeout=120)


def test_login_tag_push_and_a_device_that_pulls_for_itself(
    env: Env, daemon: DaemonProc, registry: Registry, tiny_bert: Path, tiny_bert_artifacts: Path, tmp_path: Path
) -> None:
    isolated(env)
    wrong = login(env, registry, "wrong-password")
    assert wrong.returncode == 77, wrong.stderr
    assert "refused the credentials" in wrong.stderr
    ok = login(env, registry, PASSWORD)
    assert ok.returncode == 0, ok.stderr
    kept = env.home / "config" / "tursi" / "registries.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert PASSWORD in kept.read_text()  # the CLI's own file, 0600, as Docker's config.json keeps it

    env.cli("up", str(tiny_bert), "--name", "emb", check=True)
    ref = f"{registry.netloc}/models/emb:v1"
    assert ref in env.cli("tag", "emb", ref, check=True).stdout
    first = env.cli("push", ref, check=True).stdout
    second = env.cli("push", ref, check=True).stdout
    assert "0 blobs, 0B uploaded" in second.replace(" B", "B"), second
    print(f"\nfirst push:  {first.strip()}\nsecond push: {second.strip()}")

    device = isolated(make_env(tmp_path / "device"))  # another machine's tursid, and a CLI with no credentials
    device_daemon = DaemonProc(device).start()
    try:
        refused = device.cli("up", ref, "--name", "emb")  # it trusts neither the registry's certificate nor us
        assert refused.returncode == 69, refused.stderr
        assert "TLS certificate is not trusted" in refused.stderr
        assert "--ca-file" in refused.stderr
        assert login(device, registry, PASSWORD, "--daemon").returncode == 0  # the daemon keeps its own
        assert not (device.home / "config" / "tursi" / "registries.json").exists()
        up = device.cli("up", ref, "--name", "emb", check=True)
        assert "emb is ready" in up.stdout
        pulled_line = next(
            line for line in up.stderr.splitlines() if line.startswith(f"pulling {ref} ") and " / " in line
        )
        done, total = pulled_line.removeprefix(f"pulling {ref} ").split(" / ")
        assert done == total, up.stderr  # the pull's progress, ending at its whole size
        (dep,) = device.ps()
        assert embed(dep["endpoint"], ["pulled by the device itself"]).shape == (1, 32)
        assert "already present" in device.cli("pull", ref, check=True).stdout
    finally:
        device_daemon.terminate()
        stop_everything_in(device.home)


def test_one_tag_for_several_targets_gives_each_device_its_own(
    env: Env, daemon: DaemonProc, registry: Registry, tiny_bert: Path
) -> None:
    """`tursi build --target rpi5,x86-64-v3 --push REF` pushes an OCI image index; a pull on this x86 machine gets
    the x86-64-v3 entry (the same fit rules as bundles)."""
    isolated(env)
    assert login(env, registry, PASSWORD).returncode == 0
    ref = f"{registry.netloc}/models/multi:v1"
    out = env.cli("build", str(tiny_bert), "--target", "rpi5,x86-64-v3", "--push", ref, check=True).stdout
    assert "index sha256:" in out
    pulled = env.cli("pull", ref, check=True).stdout
    key = pulled.split("artifact ")[1].split()[0]
    (folder,) = [d for d in (env.home / "artifacts").iterdir() if d.name.startswith(key)]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["plan"]["params"]["hardware_target"] == "x86-64-v3"
    print(f"\n{out.strip()}\n{pulled.strip()} -> built for {manifest['plan']['params']['hardware_target']}")


def test_a_model_spec_artifact_pushed_the_way_docker_does_deploys(
    env: Env, daemon: DaemonProc, registry: Registry, smollm2_gguf: Path
) -> None:
    """What `docker model push` writes (docker/model-spec, the fields Docker's own code writes): an OCI manifest,
    the model config and one GGUF layer plus a license layer, and no Tursi manifest. `tursi up REF` pulls the
    GGUF (checked), imports it like any GGUF file and serves it."""
    import hashlib
    import io

    from tursi.registry.artifacts import GGUF_LAYER, MODEL_CONFIG, OCI_MANIFEST
    from tursi.registry.client import RegistryClient, file_digest

    isolated(env)
    assert login(env, registry, PASSWORD).returncode == 0
    docker = RegistryClient(registry.netloc, USER, PASSWORD, ca_pem=registry.cafile.read_text())
    gguf_digest, gguf_size = file_digest(smollm2_gguf)
    license_text = b"Apache-2.0\n"
    license_digest = "sha256:" + hashlib.sha256(license_text).hexdigest()
    config = json.dumps(
        {
            "config": {
                "format": "gguf",
                "quantization": "Q4_1",
                "parameters": "134.52 M",
                "architecture": "llama",
                "size": "93.81 MiB",
            },
            "descriptor": {"created": "2026-11-30T00:00:00Z"},
            "rootfs": {"type": "rootfs", "diff_ids": [gguf_digest, license_digest]},
        }  # fmt: skip
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    docker.push_blob("ai/smollm2", io.BytesIO(config), config_digest, len(config))
    with smollm2_gguf.open("rb") as fh:
        docker.push_blob("ai/smollm2", fh, gguf_digest, gguf_size)
    docker.push_blob("ai/smollm2", io.BytesIO(license_text), license_digest, len(license_text))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": MODEL_CONFIG, "size": len(config), "digest": config_digest},
        "layers": [
            {"mediaType": GGUF_LAYER, "size": gguf_size, "digest": gguf_digest},
            {"mediaType": "application/vnd.docker.ai.license", "size": len(license_text), "digest": license_digest},
        ],
    }
    docker.put_manifest("ai/smollm2", "latest", json.dumps(manifest).encode(), OCI_MANIFEST)

    ref = f"{registry.netloc}/ai/smollm2:latest"
    assert "pushed by another tool" in env.cli("pull", ref, check=True).stdout
    env.cli("up", ref, "--name", "dmr", "--ctx-size", "256", check=True)
    (dep,) = env.ps()
    assert dep["format"] == "gguf"
    status, reply = post(f"{dep['endpoint']}/completions", {"prompt": "Hello", "max_tokens": 4})
    assert status == 200, reply
    assert reply["usage"]["completion_tokens"] > 0

    (downloaded,) = (env.home / "artifacts" / ".pulled").iterdir()  # `up` imported it into the cache: a spare copy
    os.utime(downloaded, (time.time() - 3600, time.time() - 3600))
    assert f"freed {human_size(downloaded.stat().st_size)}" in env.cli("prune", check=True).stdout
    assert not downloaded.exists()
    assert post(f"{dep['endpoint']}/completions", {"prompt": "Hello", "max_tokens": 2})[0] == 200
