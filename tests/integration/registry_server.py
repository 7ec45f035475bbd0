"""The CNCF Distribution registry (Debian's `docker-registry`, unpacked by platform/install-registry.sh) on loopback
with TLS and htpasswd auth, for the registry tests: a real registry, never a stand-in."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_lifecycle import free_port
from tursi.daemon.tls import ensure_self_signed

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "tursi", "registry-test-password-42"


@dataclass
class Registry:
    netloc: str  # 127.0.0.1:PORT
    cafile: Path  # its self-signed certificate: what a client trusts
    storage: Path  # the registry's storage root (tests corrupt blobs here)

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def registry_binary() -> str:
    found = shutil.which("docker-registry")
    if found:
        return found
    done = subprocess.run(
        ["bash", str(ROOT / "platform" / "install-registry.sh")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise AssertionError(f"platform/install-registry.sh failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import bcrypt

    base = tmp_path_factory.mktemp("registry")
    cert, key, _ = ensure_self_signed(base / "tls", "127.0.0.1")
    htpasswd = base / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    port = free_port()
    storage = base / "data"
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}', secret: test-secret, tls: {{certificate: {cert}, key: {key}}}}}\n"
        f"auth: {{htpasswd: {{realm: tursi-test, path: {htpasswd}}}}}\n"
    )
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log)
    try:
        _wait_up(port, cert, proc, base / "registry.log")
        yield Registry(f"127.0.0.1:{port}", cert, storage)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_up(port: int, cert: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the registry exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", context=context, timeout=2)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the registry did not answer within 20 s")
