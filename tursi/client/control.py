"""Control client: HTTP over the daemon's Unix socket (or TCP), with the standard library only.

The CLI must start fast, so no aiohttp/requests here.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode, urlparse

from tursi.client.daemon_start import start_tursid
from tursi.client.types import (
    Artifact,
    BuiltEvent,
    BundleDownload,
    Deployment,
    DeploymentDetail,
    LoadedBundle,
    OnEvent,
    ProgressEvent,
    ReadyEvent,
    Removal,
    StatsSnapshot,
    SystemInfo,
)
from tursi.core.addresses import is_loopback
from tursi.core.errors import (
    DaemonUnavailable,
    InsecureTransport,
    InternalError,
    TlsMismatch,
    TursiError,
    error_for_code,
)
from tursi.core.settings import Settings, cli_only


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS where the daemon's certificate is trusted by its sha256 fingerprint (a self-signed cert on a
    device), checked right after the handshake and before any request, token included, is sent."""

    def __init__(self, netloc: str, fingerprint: str, timeout: float | None) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # replaced by the pin below
        super().__init__(netloc, timeout=timeout, context=ctx)
        self.fingerprint = normalize_fingerprint(fingerprint)

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        got = hashlib.sha256(der).hexdigest()
        if not hmac.compare_digest(got, self.fingerprint):
            self.close()
            raise TlsMismatch(
                f"tursid at {self.host}:{self.port} presented certificate sha256:{got}, "
                f"not the pinned sha256:{self.fingerprint}",
                hint="check TURSI_TLS_FINGERPRINT (tursid prints its fingerprint at start)",
            )


def normalize_fingerprint(value: str) -> str:
    hexdigits = value.lower().removeprefix("sha256:").replace(":", "").strip()
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise DaemonUnavailable(f"TLS fingerprint {value!r} is not a sha256 (64 hex digits)")
    return hexdigits


def _error_from(status: int, raw: bytes) -> TursiError:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or "code" not in body:
        err: TursiError = InternalError(f"tursid answered HTTP {status}: {raw[:200]!r}")
        return err
    return problem_to_error(body)


def problem_to_error(body: dict[str, Any]) -> TursiError:
    cls = error_for_code(str(body.get("code")))
    extra = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "code", "hint")}
    err = cls(str(body.get("detail", "")), hint=body.get("hint"), **extra)
    if cls is TursiError:  # an unknown code from a newer daemon: keep what it said
        err.code, err.http_status = str(body.get("code")), int(body.get("status", 500))
    return err


UPLOAD_ANSWER_S = 900.0


class ControlClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = 30.0,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_fingerprint: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.token = token
        self.tls_ca = tls_ca
        self.tls_fingerprint = tls_fingerprint
        parsed = urlparse(url)
        self.scheme = parsed.scheme
        if parsed.scheme == "unix":
            self.socket_path = parsed.path
        elif parsed.scheme in ("http", "https"):
            self.netloc = parsed.netloc
        else:
            raise DaemonUnavailable(f"unsupported daemon address {url!r}: use unix:///path or http(s)://host:port")

    def _refuse_plain_text_token(self) -> None:
        """The token goes in clear over http:// only to this machine: anyone on the path could read it."""
        host = (urlparse(self.url).hostname or "").lower()
        if self.scheme == "http" and not is_loopback(host):
            raise InsecureTransport(
                f"refusing to send the control token to {self.url} over plain http://",
                hint="use https:// (tursid --listen serves TLS) with TURSI_TLS_FINGERPRINT, or an SSH tunnel",
            )

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return _UnixConnection(self.socket_path, timeout)
        if self.scheme == "https":
            if self.tls_fingerprint:
                return _PinnedHTTPSConnection(self.netloc, self.tls_fingerprint, timeout)
            return http.client.HTTPSConnection(
                self.netloc, timeout=timeout, context=ssl.create_default_context(cafile=self.tls_ca)
            )
        return http.client.HTTPConnection(self.netloc, timeout=timeout)

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
        upload: tuple[Any, int] | None = None,
        stream: bool = False,
    ) -> http.client.HTTPResponse:
        """One request; the answer's status line and headers must come within ``timeout`` (default: the client's).
        A ``stream`` has no deadline once it has started: a conversion step may run for many minutes without a
        progress line, and ``logs -f`` waits for lines as long as the user likes."""
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.token and self.scheme != "unix":
            self._refuse_plain_text_token()  # before any connection is made
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._conn(timeout if timeout is not None else self.timeout)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if upload is not None:  # (file object, length): streamed as the body
            data, headers["Content-Length"] = upload[0], str(upload[1])
            headers["Content-Type"] = "application/x-tar"
        sock = None
        try:
            conn.request(method, path, body=data, headers=headers)
            sock = conn.sock  # the response may take the socket over (and clear conn.sock) once it is read
            resp = conn.getresponse()
        except ssl.SSLError as e:
            conn.close()
            raise DaemonUnavailable(
                f"TLS with tursid at {self.url} failed: {e.reason or e}",
                hint="trust its certificate: TURSI_TLS_FINGERPRINT=sha256:... or TURSI_TLS_CA=cert.pem",
            ) from e
        except BrokenPipeError as e:  # the daemon refused an upload early (e.g. over its cap): read why
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                raise DaemonUnavailable(f"tursid at {self.url} closed the connection: {e}") from e
        except (TimeoutError, FileNotFoundError, ConnectionRefusedError, ConnectionResetError, OSError) as e:
            conn.close()
            raise DaemonUnavailable(
                f"cannot reach tursid at {self.url}: {e.strerror or e}",
                hint="start it with `tursid`, or unset TURSI_NO_AUTOSTART",
            ) from e
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise _error_from(resp.status, raw)
        if stream and sock is not None:
            sock.settimeout(None)
        return resp

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        resp = self._send(method, path, body, query)
        try:
            return json.loads(resp.read() or b"null")
        finally:
            resp.close()

    def stream_lines(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Iterator[bytes]:
        """Lines of a streamed response (NDJSON events or log text), as they arrive."""
        resp = self._send(method, path, body, query, stream=True)
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException):
                    return  # the daemon went away mid-stream: the caller sees the stream end early
                if not line:
                    return
                yield line
        finally:
            resp.close()

    def stream_events(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        for line in self.stream_lines(method, path, body, query):
            if line.strip():
                yield json.loads(line)

    def upload(self, path: str, fileobj: Any, length: int, query: dict[str, Any] | None = None) -> Any:
        """POST a file as the request body (a bundle), streamed; returns the JSON answer."""
        # the daemon checks and unpacks the whole bundle before it answers: minutes for a large one
        resp = self._send("POST", path, None, query, timeout=UPLOAD_ANSWER_S, upload=(fileobj, length))
        try:
            return json.loads(resp.read() or b"null")
        finally:
            resp.close()

    def download(self, path: str, query: dict[str, Any] | None = None) -> tuple[http.client.HTTPResponse, int]:
        """A streamed GET: the open response and its Content-Length (-1 when unknown)."""
        resp = self._send("GET", path, None, query, stream=True)
        return resp, int(resp.getheader("Content-Length") or -1)

    def healthy(self) -> bool:
        try:
            self._send("GET", "/health", timeout=2.0).close()
            return True
        except TursiError:
            return False

    @staticmethod
    def quote(name: str) -> str:
        return quote(name, safe="")

    # -- one method per operation of the control API: the CLI calls these and spells no URL ----------------------

    def up(self, spec: Mapping[str, Any], on_event: OnEvent | None = None) -> ReadyEvent:
        """Deploy: ``spec`` is the request body (a None value: the daemon's default). ``on_event`` sees each
        progress event; returns the ``ready`` event, raises the error the daemon streamed."""
        return cast(ReadyEvent, self._progress("/v1/deployments", spec, "ready", on_event))

    def plan(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """What `up` with this body would do here and why (`up --dry-run`): the plan and its reasons, the cached
        artifact if any, the expected size and memory. Nothing is converted, recorded or started."""
        body = {k: v for k, v in spec.items() if v is not None}
        # the daemon hashes the source to find its cached artifact (and may fetch a hub id): minutes for a large one
        resp = self._send("POST", "/v1/plan", body, timeout=UPLOAD_ANSWER_S)
        try:
            return cast(dict[str, Any], json.loads(resp.read()))
        finally:
            resp.close()

    def build(self, spec: Mapping[str, Any], on_event: OnEvent | None = None) -> BuiltEvent:
        """Convert for a target into the daemon's cache (no deployment); returns the ``built`` event."""
        return cast(BuiltEvent, self._progress("/v1/artifacts/build", spec, "built", on_event))

    def deployments(self, all: bool = False) -> list[Deployment]:
        """Running deployments, or every one with ``all`` (stopped and failed too)."""
        return cast(list[Deployment], self.request("GET", "/v1/deployments", query={"all": 1 if all else None}))

    def deployment(self, name: str) -> DeploymentDetail:
        """One deployment with its manifest and latest events (`inspect`)."""
        return cast(DeploymentDetail, self.request("GET", f"/v1/deployments/{self.quote(name)}"))

    def down(self, name: str) -> list[str]:
        """Stop and remove one deployment; the names removed."""
        return cast(list[str], self.request("DELETE", f"/v1/deployments/{self.quote(name)}")["removed"])

    def stop(self, name: str) -> Deployment:
        """Unload one deployment (its worker stops; it stays, idle, and loads again on a request)."""
        return cast(Deployment, self.request("POST", f"/v1/deployments/{self.quote(name)}/stop"))

    def start(self, name: str) -> Deployment:
        """Load one idle, exited or failed deployment; returns once it is ready (``load_seconds`` added)."""
        return cast(Deployment, self.request("POST", f"/v1/deployments/{self.quote(name)}/start"))

    def registry_tag(self, source: str, ref: str) -> dict[str, Any]:
        """Name an artifact (by deployment, key or tag) with a registry reference, on this daemon."""
        return cast(dict[str, Any], self.request("POST", "/v1/registry/tags", {"source": source, "ref": ref}))

    def registry_push(self, ref: str, auth: Mapping[str, Any] | None) -> dict[str, Any]:
        """The daemon pushes the artifact tagged ``ref``; what it uploaded and what the registry had."""
        return cast(dict[str, Any], self.request("POST", "/v1/registry/push", {"ref": ref, "auth": auth}))

    def registry_push_index(self, ref: str, sources: list[str], auth: Mapping[str, Any] | None) -> dict[str, Any]:
        """The daemon pushes ``sources`` (built for target profiles) as one multi-target tag ``ref``."""
        body = {"ref": ref, "sources": sources, "auth": auth}
        return cast(dict[str, Any], self.request("POST", "/v1/registry/push-index", body))

    def registry_pull(
        self, ref: str, auth: Mapping[str, Any] | None, on_event: OnEvent | None = None
    ) -> dict[str, Any]:
        """The daemon pulls ``ref`` into its cache; its key and whether anything was downloaded. Progress ("bytes"
        events) goes to ``on_event`` while layers download."""
        return self._progress("/v1/registry/pull", {"ref": ref, "auth": auth, "stream": True}, "pulled", on_event)

    def ui_login_token(self) -> dict[str, Any]:
        """A one-time login link for the dashboard."""
        return cast(dict[str, Any], self.request("POST", "/v1/ui/login-token", {}))

    def registry_login(self, registry: str, auth: Mapping[str, Any]) -> dict[str, Any]:
        """Give the daemon its own credentials for ``registry`` (checked there first)."""
        return cast(dict[str, Any], self.request("POST", "/v1/registry/login", {"registry": registry, **auth}))

    def registry_logout(self, registry: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("DELETE", f"/v1/registry/login/{self.quote(registry)}"))

    def down_all(self) -> list[str]:
        """Stop and remove every deployment; the names removed."""
        return cast(list[str], self.request("DELETE", "/v1/deployments")["removed"])

    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """A deployment's log lines as raw bytes; with ``follow`` until the deployment stops."""
        query = {"tail": tail, "follow": 1 if follow else None, "since": since, "timestamps": 1 if timestamps else None}
        return self.stream_lines("GET", f"/v1/deployments/{self.quote(name)}/logs", query=query)

    def stats(self) -> StatsSnapshot:
        """The latest resource sample."""
        return cast(StatsSnapshot, self.request("GET", "/v1/stats"))

    def stats_stream(self) -> Iterator[StatsSnapshot]:
        """Every new resource sample, as the daemon takes them, until the connection ends."""
        return cast(Iterator[StatsSnapshot], self.stream_events("GET", "/v1/stats", query={"stream": 1}))

    def system(self) -> SystemInfo:
        """Hardware profile and versions of the daemon's machine."""
        return cast(SystemInfo, self.request("GET", "/v1/system"))

    def artifacts(self) -> list[Artifact]:
        """The artifact cache (`images`)."""
        return cast(list[Artifact], self.request("GET", "/v1/artifacts"))

    def remove_artifact(self, key: str) -> Removal:
        """Remove the artifact whose key starts with ``key`` (no deployment may use it)."""
        return cast(Removal, self.request("DELETE", f"/v1/artifacts/{self.quote(key)}"))

    def prune(self) -> Removal:
        """Remove every artifact no deployment uses."""
        return cast(Removal, self.request("POST", "/v1/artifacts/prune"))

    def load(self, bundle: Any, length: int, *, force: bool = False) -> LoadedBundle:
        """Upload a `.tursi` bundle (a binary file object of ``length`` bytes); the daemon verifies it all first.
        ``force`` loads one built for other hardware."""
        query = {"force": "1" if force else None}
        return cast(LoadedBundle, self.upload("/v1/artifacts/load", bundle, length, query))

    def export_bundle(self, key: str, name: str | None = None) -> BundleDownload:
        """An artifact as a `.tursi` stream (``name``: the name stored in the bundle)."""
        resp, length = self.download(f"/v1/artifacts/{self.quote(key)}/bundle", {"name": name})
        return BundleDownload(resp, length)

    def _progress(self, path: str, spec: Mapping[str, Any], final: str, on_event: OnEvent | None) -> dict[str, Any]:
        body = {k: v for k, v in spec.items() if v is not None}
        for event in self.stream_events("POST", path, body):
            kind = event.get("event")
            if kind == "error":
                raise problem_to_error(event)
            if kind == final:
                return event
            if on_event is not None:
                on_event(cast(ProgressEvent, event))
        raise DaemonUnavailable(
            "tursid closed the connection before it finished (did it stop?)", hint="check `tursi ps -a` and its log"
        )


def daemon_url(settings: Settings, override: str | None = None) -> str:
    return override or settings.host or f"unix://{settings.socket_path}"


def connect(settings: Settings, override: str | None = None) -> ControlClient:
    """A client for the chosen daemon; starts a local tursid in the background when none answers."""
    url = daemon_url(settings, override)
    client = ControlClient(url, token=settings.token, tls_ca=settings.tls_ca, tls_fingerprint=settings.tls_fingerprint)
    local_default = url == f"unix://{settings.socket_path}"
    if not local_default or not settings.autostart or client.healthy():
        return client
    settings.ensure_dirs()
    env = {**daemon_env(os.environ), "TURSI_HOME": str(settings.home)}
    # not fail_on_exit: ours exits at once when another CLI's autostart won the home's lock, and that one answers
    start_tursid(client, env, log_path=Path(settings.daemon_log), timeout_s=15.0, fail_on_exit=False)
    return client


# What an autostarted tursid inherits from the CLI's shell: what it and its workers and converters need to run,
# find Python and the models, and download from the hub, not the shell's secrets (other tools' tokens and keys).
_DAEMON_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CUDA_VISIBLE_DEVICES"}
    | {"HUGGING_FACE_HUB_TOKEN", "OMP_NUM_THREADS"}
    | {f"{name}_PROXY" for name in ("HTTP", "HTTPS", "ALL", "NO")}
    | {f"{name}_proxy" for name in ("http", "https", "all", "no")}
)
_DAEMON_ENV_PREFIXES = ("LC_", "XDG_", "HF_", "PYTHON", "TURSI_")
_CLIENT_ONLY = cli_only()  # TURSI_HOST, TURSI_TOKEN, TURSI_TLS_*: how the CLI reaches a daemon


def daemon_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the CLI's environment an autostarted tursid gets (never TURSI_TOKEN: it is for a remote daemon)."""
    return {
        k: v
        for k, v in environ.items()
        if (k in _DAEMON_ENV or k.startswith(_DAEMON_ENV_PREFIXES)) and k not in _CLIENT_ONLY
    }
