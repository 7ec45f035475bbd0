"""The CNCF Distribution registry (Debian's `docker-registry`, unpacked by platform/install-registry.sh) on loopback
with TLS and htpasswd auth, for the registry tests: a real registry, never a stand-in."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    with serving(base, cert, key, f"{{htpasswd: {{realm: tursi-test, path: {htpasswd}}}}}") as reg:
        yield reg


@contextmanager
def serving(base: Path, cert: Path, key: Path, auth: str, host: str = "127.0.0.1") -> Iterator[Registry]:
    """The registry on a free port of ``host`` (loopback unless told) with TLS, ``auth`` its `auth:` section (YAML
    flow), until the block ends."""
    port = free_port()
    storage = base / "data"
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{host}:{port}', secret: test-secret, tls: {{certificate: {cert}, key: {key}}}}}\n"
        f"auth: {auth}\n"
    )
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log)
    try:
        _wait_up(f"{host}:{port}", cert, proc, base / "registry.log")
        yield Registry(f"{host}:{port}", cert, storage)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_up(netloc: str, cert: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the registry exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"https://{netloc}/v2/", context=context, timeout=2)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the registry did not answer within 20 s")


@dataclass
class TokenService:
    """Distribution's token auth, as registries like Docker Hub and GHCR speak it: checks Basic credentials and
    answers a JWT (RS256, the signing certificate in ``x5c``) granting the scopes asked for."""

    port: int
    cert: Path
    scopes_asked: list[str]


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token_handler(key: Any, cert_der: bytes, service: TokenService) -> type:
    import base64
    import json
    import os
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            query = parse_qs(urlsplit(self.path).query)
            access = []
            for scope in query.get("scope", []):
                service.scopes_asked.append(scope)
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {"iss": "tursi-test", "sub": USER, "aud": query["service"][0], "exp": now + 300,
                      "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}  # fmt: skip
            head = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(cert_der).decode()]}
            signing = _b64url(json.dumps(head).encode()) + "." + _b64url(json.dumps(claims).encode())
            signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": signing + "." + _b64url(signature), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _rsa_signer(cert_path: Path) -> tuple[Any, Path]:
    """An RSA key and its self-signed certificate: what signs the tokens (RS256), which the registry trusts."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tursi-test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert_path


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenService]]:
    """The registry with token auth (Bearer, scoped per repository and action) and its token service."""
    import threading
    from http.server import ThreadingHTTPServer

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_certificate

    base = tmp_path_factory.mktemp("token-registry")
    cert, key_path, _ = ensure_self_signed(base / "tls", "127.0.0.1")
    signer_key, signer_cert = _rsa_signer(base / "signer.pem")
    der = load_pem_x509_certificate(signer_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    service = TokenService(free_port(), signer_cert, [])
    server = ThreadingHTTPServer(("127.0.0.1", service.port), _token_handler(signer_key, der, service))
    # over TLS, with the registry's own certificate: Tursi sends credentials to a token service over HTTPS only
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key_path)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    auth = (
        f"{{token: {{realm: 'https://127.0.0.1:{service.port}/token', service: tursi-test-registry, "
        f"issuer: tursi-test, rootcertbundle: {signer_cert}}}}}"
    )
    try:
        with serving(base, cert, key_path, auth) as reg:
            yield reg, service
    finally:
        server.shutdown()
