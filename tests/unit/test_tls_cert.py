"""The self-signed certificate tursid makes for --listen: a TLS server certificate, never a CA that could sign
certificates for other names once a client trusts it (TURSI_TLS_CA)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tursi.daemon.tls import ensure_self_signed, server_context


def test_self_signed_certificate_is_a_server_certificate_not_a_ca(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_path, key_path, made = ensure_self_signed(tmp_path / "tls", "127.0.0.1")
    assert made
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert not usage.crl_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert handshake_trusting(cert_path, key_path) == "127.0.0.1"  # still usable as the client's trust anchor


def handshake_trusting(cert_path: Path, key_path: Path) -> str:
    """A real TLS handshake to a server presenting the certificate, by a client that trusts only that file and
    checks the host name; returns the verified peer's subjectAltName IP."""
    server = server_context(cert_path, key_path)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=str(cert_path))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                peer = tls.getpeercert()
        thread.join(timeout=10)
    return next(v for k, v in peer["subjectAltName"] if k == "IP Address" and v == "127.0.0.1")
