"""A small client of the OCI distribution API (stdlib HTTP): what push and pull need, nothing more.

Auth as Distribution speaks it: a 401 names the scheme; ``Basic`` gets the credentials, ``Bearer`` sends us to the
token service for a token of the request's scope (``repository:NAME:pull[,push]``), cached per scope. Blobs go up as
POST then PUT with the file streamed (Distribution ignores a one-request POST with a digest), after a HEAD: a blob
the registry has is never sent again. Downloads are checked while they stream: size and sha256 against the
descriptor, and a manifest's bytes against its digest (the registry does not re-check what it stores).

A registry is remote and hostile until checked: a digest is used (in a URL, as a file name) only once it is
``sha256:`` and 64 lowercase hex digits; manifests, token answers and error bodies are read up to a cap; a body
shorter or longer than announced is refused; a pull has an overall deadline and a floor on its speed; credentials go
to a token service only over HTTPS (plain HTTP only to loopback, and only when plain HTTP was asked for); a blob
redirect (a CDN, as Docker Hub and GHCR answer) is followed on the same scheme, without the credentials.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tursi.core.addresses import is_loopback
from tursi.core.errors import DigestMismatch, RegistryFailed, RegistryMalformed, RegistryUnauthorized

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CHUNK = 1 << 20
_PARAM = re.compile(r'(\w+)="([^"]*)"')
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_MANIFEST = 4 << 20  # Distribution's own limit on a manifest's size
MAX_SMALL = 64 << 10  # a token service's answer
MAX_DETAIL = 500  # what an error names of the registry's body
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
PULL_DEADLINE_S = 6 * 3600.0  # a whole pull; generous for a GB over a slow link, finite for a stalled one
SLOW_WINDOW_S, SLOW_FLOOR = 60.0, 1024  # under 1 KiB over any 60 s of a blob: the registry stalls, the pull ends


def checked_digest(value: object, what: str) -> str:
    """``value`` as a sha256 digest; RegistryMalformed when it is anything else (it becomes a URL and a file name)."""
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise RegistryMalformed(
            f"{what} has the digest {str(value)[:80]!r}: Tursi takes sha256: and 64 lowercase hex digits"
        )
    return value


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
    deadline: float | None = None  # time.monotonic() by which the whole exchange must be done (a pull sets it)
    _tokens: dict[str, str] = field(default_factory=dict)
    _basic: bool = False

    def __post_init__(self) -> None:
        if self.plain_http and not is_loopback(urllib.parse.urlsplit(f"//{self.registry}").hostname or ""):
            raise RegistryFailed(
                f"plain HTTP is for a registry on loopback only ({self.registry} is not): credentials and artifacts "
                "would cross the network unprotected",
                hint="give the registry a certificate (tursi login --ca-file CERT for a private CA)",
            )

    # -- HTTP and auth ------------------------------------------------------------------------------

    def _timeout(self) -> float:
        if self.deadline is None:
            return 60.0
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RegistryFailed(f"the exchange with {self.registry} ran past its deadline")
        return min(60.0, left)

    def _connection(self, netloc: str | None = None, https: bool | None = None) -> http.client.HTTPConnection:
        netloc = netloc or self.registry
        if not (https if https is not None else not self.plain_http):
            return http.client.HTTPConnection(netloc, timeout=self._timeout())
        return http.client.HTTPSConnection(netloc, timeout=self._timeout(), context=self._tls())

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
            _drain(resp)
            self._authenticate(challenge, scope)
        if resp.status == 401:
            _drain(resp)
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
            raise RegistryFailed(f"{self.registry} names a token service that is not a URL: {realm[:200]!r}")
        if url.scheme == "http" and not (self.plain_http and is_loopback(url.hostname or "")):
            # the password would cross the network in clear text, to a host the registry chose
            raise RegistryFailed(
                f"{self.registry} sends us to the token service {realm[:200]!r} over plain HTTP: credentials go to a "
                "token service over HTTPS only (plain HTTP only on loopback, for a registry asked for with plain HTTP)"
            )
        conn = self._connection(url.netloc, https=url.scheme == "https")
        headers = {}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        resp = self._send(conn, "GET", f"{url.path or '/'}?{urllib.parse.urlencode(query)}", None, headers)
        data = self._read_capped(resp, MAX_SMALL, "the token service's answer")
        if resp.status in (401, 403):
            raise RegistryUnauthorized(f"{self.registry}'s token service refused the credentials")
        try:
            doc = json.loads(data)
            return str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, AttributeError, TypeError):
            raise RegistryFailed(f"{self.registry}'s token service answered {resp.status} without a token") from None

    def _check(self, resp: http.client.HTTPResponse, *ok: int, what: str) -> None:
        if resp.status not in ok:
            try:
                detail = resp.read(MAX_DETAIL).decode(errors="replace")
            except (OSError, http.client.HTTPException):
                detail = ""
            resp.close()
            raise RegistryFailed(f"{what}: {self.registry} answered {resp.status} {detail[:MAX_DETAIL]}".strip())

    def _read_capped(self, resp: http.client.HTTPResponse, cap: int, what: str) -> bytes:
        """The whole body, refused (unread) when it announces or brings more than ``cap`` bytes, or less than it
        announced."""
        announced = resp.getheader("Content-Length")
        if announced is not None and (not announced.strip().isdigit() or int(announced) > cap):
            resp.close()
            raise RegistryMalformed(f"{what} from {self.registry} is {announced[:40]} bytes; the cap is {cap}")
        try:
            data = resp.read(cap + 1)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryMalformed(f"{what} from {self.registry} broke off: {type(e).__name__}") from None
        if len(data) > cap:
            resp.close()
            raise RegistryMalformed(f"{what} from {self.registry} is over the cap of {cap} bytes")
        return data

    def ping(self, repository: str = "") -> None:
        """Checks the credentials (GET /v2/, or a pull of ``repository`` where token scopes need one)."""
        scope = f"repository:{repository}:pull" if repository else "registry:catalog:*"
        resp = self.request("GET", "/v2/", scope)
        self._check(resp, 200, what="ping")
        _drain(resp)

    # -- blobs --------------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        checked_digest(digest, "a blob")
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull")
        _drain(resp)
        return resp.status == 200

    def push_blob(self, repository: str, source: IO[bytes], digest: str, size: int) -> bool:
        """Uploads the blob unless the registry has it; True when it was sent."""
        scope = f"repository:{repository}:pull,push"
        if self.has_blob(repository, digest):
            self.traffic.blobs_skipped += 1
            return False
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope, {"Content-Length": "0"})
        self._check(start, 202, what=f"starting the upload of {digest}")
        _drain(start)
        where = urllib.parse.urlsplit(start.getheader("Location", ""))
        query = (where.query + "&" if where.query else "") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        done = self.request("PUT", f"{where.path}?{query}", scope, headers, source)
        self._check(done, 201, what=f"uploading {digest}")
        _drain(done)
        self.traffic.blobs_uploaded += 1
        self.traffic.bytes_uploaded += size
        return True

    def fetch_blob(
        self, repository: str, digest: str, size: int, into: IO[bytes], have: tuple[Any, int] | None = None
    ) -> None:
        """Streams the blob into ``into``, checking its size and sha256 as it comes: DigestMismatch otherwise.
        ``have``: (the sha256 object, the count) of its first bytes, already in ``into`` (an interrupted pull):
        only the rest is asked for (Range); a registry that sends the whole blob instead is read from the start."""
        checked_digest(digest, "a blob")
        hasher, got = hashlib.sha256(), 0
        headers = {"Range": f"bytes={have[1]}-"} if have else {}
        resp = self.request("GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", headers)
        resp = self._follow(resp, headers, digest)
        self._check(resp, 200, 206, what=f"fetching {digest}")
        if have and resp.status == 206 and resp.getheader("Content-Range", "").startswith(f"bytes {have[1]}-"):
            hasher, got = have
        else:
            into.seek(0)
            into.truncate()
        start = got
        if self.on_bytes is not None and start:
            self.on_bytes(start)  # what an interrupted pull already had
        for chunk in self._chunks(resp, digest):
            got += len(chunk)
            if got > size:
                resp.close()
                raise DigestMismatch(f"blob {digest} is longer than its descriptor's {size} bytes")
            hasher.update(chunk)
            into.write(chunk)
            if self.on_bytes is not None:
                self.on_bytes(len(chunk))
        self.traffic.bytes_downloaded += got - start
        if got != size or "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {self.registry} does not match its digest ({got} bytes)")

    def _follow(self, resp: http.client.HTTPResponse, headers: dict[str, str], digest: str) -> http.client.HTTPResponse:
        """A blob redirect (a CDN's signed URL) followed on the same scheme, up to MAX_REDIRECTS, without the
        registry's credentials (the redirect's URL carries its own)."""
        https = not self.plain_http
        for _ in range(MAX_REDIRECTS):
            if resp.status not in REDIRECTS:
                return resp
            resp.read(MAX_DETAIL)
            resp.close()
            url = urllib.parse.urlsplit(resp.getheader("Location", ""))
            if url.scheme != ("https" if https else "http") or not url.netloc:
                raise RegistryFailed(
                    f"{self.registry} redirects {digest} to {urllib.parse.urlunsplit(url)[:200]!r}: Tursi follows a "
                    f"blob redirect on {'HTTPS' if https else 'plain HTTP'} only"
                )
            if not https and not is_loopback(url.hostname or ""):
                raise RegistryFailed(f"{self.registry} redirects {digest} off loopback over plain HTTP")
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            resp = self._send(self._connection(url.netloc, https=https), "GET", path, None, headers)
        raise RegistryFailed(f"{self.registry} redirects {digest} more than {MAX_REDIRECTS} times")

    def _chunks(self, resp: http.client.HTTPResponse, digest: str) -> Iterator[bytes]:
        """The body as it arrives (each piece as soon as the socket has it), within the deadline and above the
        speed floor; a body cut short is RegistryFailed (the size check would also catch it)."""
        window_start, window_bytes = time.monotonic(), 0
        while True:
            try:
                chunk = resp.read1(CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise RegistryFailed(f"fetching {digest} from {self.registry} broke off: {type(e).__name__}") from None
            if not chunk:
                return
            yield chunk
            now = time.monotonic()
            if self.deadline is not None and now > self.deadline:
                resp.close()
                raise RegistryFailed(f"fetching {digest} from {self.registry} ran past the pull's deadline")
            window_bytes += len(chunk)
            if now - window_start >= SLOW_WINDOW_S:
                if window_bytes < SLOW_FLOOR:
                    resp.close()
                    raise RegistryFailed(
                        f"{self.registry} sent {window_bytes} bytes of {digest} in {now - window_start:.0f} s: "
                        "the registry has stalled"
                    )
                window_start, window_bytes = now, 0

    # -- manifests ----------------------------------------------------------------------------------

    def put_manifest(self, repository: str, pointer: str, body: bytes, media_type: str) -> str:
        scope = f"repository:{repository}:pull,push"
        resp = self.request("PUT", f"/v2/{repository}/manifests/{pointer}", scope, {"Content-Type": media_type}, body)
        self._check(resp, 201, what=f"storing the manifest {pointer}")
        _drain(resp)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def get_manifest(self, repository: str, pointer: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest), the bytes checked against the digest asked for or announced."""
        if pointer.startswith("sha256:") or ":" in pointer:
            checked_digest(pointer, "a manifest")
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        resp = self.request("GET", f"/v2/{repository}/manifests/{pointer}", f"repository:{repository}:pull", headers)
        if resp.status == 404:
            resp.read(MAX_DETAIL)
            resp.close()
            raise RegistryFailed(f"{self.registry}/{repository} has no manifest {pointer}")
        self._check(resp, 200, what=f"fetching the manifest {pointer}")
        body = self._read_capped(resp, MAX_MANIFEST, f"the manifest {pointer}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = pointer if pointer.startswith("sha256:") else resp.getheader("Docker-Content-Digest", digest)
        if digest != expected:
            raise DigestMismatch(
                f"the manifest {pointer} from {self.registry} does not match its digest {expected[:80]}"
            )
        return body, (resp.getheader("Content-Type", "") or "").split(";")[0].strip(), digest


def _drain(resp: http.client.HTTPResponse) -> None:
    """Done with ``resp``: what little of its body is left is read (so the connection could be reused) and it is
    closed; a registry that keeps sending is not read further."""
    try:
        resp.read(MAX_DETAIL)
    except (OSError, http.client.HTTPException):
        pass
    resp.close()


def file_digest(path: Path) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return "sha256:" + hasher.hexdigest(), size
