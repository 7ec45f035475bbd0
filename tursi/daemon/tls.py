"""TLS for the control API over TCP: a self-signed certificate made at first start, or one the user gives."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import psutil

CERT, KEY = "tursid.crt", "tursid.key"


def _names(listen_host: str) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns = sorted({"localhost", socket.gethostname()})
    ips = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    ips.add(ipaddress.ip_address(a.address.split("%")[0]))
                except ValueError:
                    pass
    try:
        ips.add(ipaddress.ip_address(listen_host))
    except ValueError:
        if listen_host not in ("", "0.0.0.0", "::"):
            dns.append(listen_host)
    return dns, sorted(ips, key=lambda ip: (ip.version, int(ip)))


def ensure_self_signed(tls_dir: Path, listen_host: str) -> tuple[Path, Path, bool]:
    """(cert, key, made_now): the daemon's own certificate, created once (EC P-256, 10 years)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = tls_dir / CERT, tls_dir / KEY
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, False
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _names(listen_host)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tursid on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([*(x509.DNSName(n) for n in dns), *(x509.IPAddress(ip) for ip in ips)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)  # a server, never a CA
        .add_extension(_server_key_usage(x509), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_bytes)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path, True


def _server_key_usage(x509: Any) -> Any:
    """An ECDSA TLS server key signs handshakes (digitalSignature) and nothing else: no certificates, no CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def fingerprint(cert_path: Path) -> str:
    """sha256 of the certificate's DER bytes, as clients pin it (TURSI_TLS_FINGERPRINT)."""
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
    return "sha256:" + hashlib.sha256(der).hexdigest()


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
