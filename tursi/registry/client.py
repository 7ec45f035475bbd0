"""A small client of the OCI distribution API (stdlib HTTP): what push and pull need, nothing more.

Auth as Distribution speaks it: a 401 names the scheme; ``Basic`` gets the credentials, ``Bearer`` sends us to the
token service for a token of the request's scope (``repository:NAME:pull[,push]``), cached per scope. Blobs go up as
POST then PUT with the file streamed (Distribution ignores a one-request POST with a digest), after a HEAD: a blob
the registry has is never sent again. Downloads are checked while they stream: size and sha256 against the
descriptor, and a manifest's bytes against its digest (the registry does not re-check what it stores).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tursi.core.errors import DigestMismatch, RegistryFailed, RegistryUnauthorized

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CHUNK = 1 << 20
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Traffic:
    """What a client sent and fetched: how a test (and the CLI) tells that a second push uploaded nothing."""

    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_skipped: int = 0
    bytes_downloaded: int = 0


@dataclass
class RegistryClient:
    registry: str  # host[:port]
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None  # a CA (or the registry's own certificate), PEM text, to trust; else the system's
    plain_http: bool = False
    traffic: Traffic = field(default_factory=Traffic)
    on_bytes: Callable[[int], None] | None = None  # told each piece of a blob as it is fetched (pull progress)
    _tokens: dict[str, str] = field(default_factory=dict)
    _basic: bool = False

    # -- HTTP and auth ------------------------------------------------------------------------------

    def _connection(self, netloc: str | None = None) -> http.client.HTTPConnection:
        netloc = netloc or self.registry
        if self.plain_http:
            return http.client.HTTPConnection(netloc, timeout=60)
        return http.client.HTTPSConnection(netloc, timeout=60, context=self._tls())

    def _tls(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError) as e:
            raise RegistryFailed(f"the CA certificate given for {self.registry} is not PEM: {e}") from None

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def request(
        self, method: str, path: str, scope: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> http.client.HTTPResponse:
        """One request, authenticated as the registry asks; the response is open (read or close it)."""
        for attempt in range(2):
            conn = self._connection()
            if hasattr(body, "seek"):
                body.seek(0)
            resp = self._send(conn, method, path, body, {**(headers or {}), **self._auth_header(scope)})
            if resp.status != 401 or attempt == 1:
                break
            challenge = resp.getheader("WWW-Authenticate", "")
            resp.read()
            self._authenticate(challenge, scope)
        if resp.status == 401:
            resp.read()
            raise RegistryUnauthorized(
                f"{self.registry} refused the credentials for {scope}", hint=f"tursi login {self.registry}"
            )
        return resp

    def _send(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        """One exchange; a registry that cannot be reached or trusted is a RegistryFailed that says which."""
        try:
            conn.request(method, path, body=body, headers=headers)
            return conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            raise RegistryFailed(
                f"{self.registry}'s TLS certificate is not trusted here: {e.verify_message}",
                hint=f"tursi login {self.registry} --ca-file CERT (add --daemon for the daemon's own pulls)",
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise RegistryFailed(f"cannot reach the registry {self.registry}: {e}") from None

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.username is None:
                raise RegistryUnauthorized(f"{self.registry} needs credentials", hint=f"tursi login {self.registry}")
            self._basic = True
            return
        if scheme.lower() != "bearer":
            raise RegistryFailed(f"{self.registry} asks for an unknown auth scheme {scheme!r}")
        params = dict(_PARAM.findall(rest))
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        self._tokens[scope] = self._fetch_token(params.get("realm", ""), query)

    def _fetch_token(self, realm: str, query: dict[str, str]) -> str:
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise RegistryFailed(f"{self.registry} names a token service that is not a URL: {realm!r}")
        conn = (
            http.client.HTTPSConnection(url.netloc, timeout=60, context=self._tls())
            if url.scheme == "https"
            else http.client.HTTPConnection(url.netloc, timeout=60)
        )
        headers = {}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        resp = self._send(conn, "GET", f"{url.path or '/'}?{urllib.parse.urlencode(query)}", None, headers)
        data = resp.read()
        if resp.status in (401, 403):
            raise RegistryUnauthorized(f"{self.registry}'s token service refused the credentials")
        try:
            doc = json.loads(data)
            return str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise RegistryFailed(f"{self.registry}'s token service answered {resp.status} without a token") from None

    def _check(self, resp: http.client.HTTPResponse, *ok: int, what: str) -> None:
        if resp.status not in ok:
            detail = resp.read()[:500].decode(errors="replace")
            raise RegistryFailed(f"{what}: {self.registry} answered {resp.status} {detail}".strip())

    def ping(self, repository: str = "") -> None:
        """Checks the credentials (GET /v2/, or a pull of ``repository`` where token scopes need one)."""
        scope = f"repository:{repository}:pull" if repository else "registry:catalog:*"
        resp = self.request("GET", "/v2/", scope)
        self._check(resp, 200, what="ping")
        resp.read()

    # -- blobs --------------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull")
        resp.read()
        return resp.status == 200

    def push_blob(self, repository: str, source: IO[bytes], digest: str, size: int) -> bool:
        """Uploads the blob unless the registry has it; True when it was sent."""
        scope = f"repository:{repository}:pull,push"
        if self.has_blob(repository, digest):
            self.traffic.blobs_skipped += 1
            return False
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope, {"Content-Length": "0"})
        self._check(start, 202, what=f"starting the upload of {digest}")
        start.read()
        where = urllib.parse.urlsplit(start.getheader("Location", ""))
        query = (where.query + "&" if where.query else "") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        done = self.request("PUT", f"{where.path}?{query}", scope, headers, source)
        self._check(done, 201, what=f"uploading {digest}")
        done.read()
        self.traffic.blobs_uploaded += 1
        self.traffic.bytes_uploaded += size
        return True

    def fetch_blob(
        self, repository: str, digest: str, size: int, into: IO[bytes], have: tuple[Any, int] | None = None
    ) -> None:
        """Streams the blob into ``into``, checking its size and sha256 as it comes: DigestMismatch otherwise.
        ``have``: (the sha256 object, the count) of its first bytes, already in ``into`` (an interrupted pull):
        only the rest is asked for (Range); a registry that sends the whole blob instead is read from the start."""
        hasher, got = hashlib.sha256(), 0
        headers = {"Range": f"bytes={have[1]}-"} if have else {}
        resp = self.request("GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", headers)
        self._check(resp, 200, 206, what=f"fetching {digest}")
        if have and resp.status == 206 and resp.getheader("Content-Range", "").startswith(f"bytes {have[1]}-"):
            hasher, got = have
        else:
            into.seek(0)
            into.truncate()
        start = got
        if self.on_bytes is not None and start:
            self.on_bytes(start)  # what an interrupted pull already had
        for chunk in _chunks(resp):
            got += len(chunk)
            if got > size:
                raise DigestMismatch(f"blob {digest} is longer than its descriptor's {size} bytes")
            hasher.update(chunk)
            into.write(chunk)
            if self.on_bytes is not None:
                self.on_bytes(len(chunk))
        self.traffic.bytes_downloaded += got - start
        if got != size or "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {self.registry} does not match its digest ({got} bytes)")

    # -- manifests ----------------------------------------------------------------------------------

    def put_manifest(self, repository: str, pointer: str, body: bytes, media_type: str) -> str:
        scope = f"repository:{repository}:pull,push"
        resp = self.request("PUT", f"/v2/{repository}/manifests/{pointer}", scope, {"Content-Type": media_type}, body)
        self._check(resp, 201, what=f"storing the manifest {pointer}")
        resp.read()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def get_manifest(self, repository: str, pointer: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest), the bytes checked against the digest asked for or announced."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        resp = self.request("GET", f"/v2/{repository}/manifests/{pointer}", f"repository:{repository}:pull", headers)
        if resp.status == 404:
            resp.read()
            raise RegistryFailed(f"{self.registry}/{repository} has no manifest {pointer}")
        self._check(resp, 200, what=f"fetching the manifest {pointer}")
        body = resp.read()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = pointer if pointer.startswith("sha256:") else resp.getheader("Docker-Content-Digest", digest)
        if digest != expected:
            raise DigestMismatch(f"the manifest {pointer} from {self.registry} does not match its digest {expected}")
        media_type = resp.getheader("Content-Type", "") or str(json.loads(body).get("mediaType", ""))
        return body, media_type.split(";")[0].strip(), digest


def _chunks(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := resp.read(CHUNK):
        yield chunk


def file_digest(path: Path) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return "sha256:" + hasher.hexdigest(), size
