"""One flat error hierarchy. Each class carries its stable code, HTTP status and CLI exit code.

Map an exception by walking ``type(e).__mro__`` so the most specific class wins; anything that is
not a ``TursiError`` is a bug in Tursi (HTTP 500, exit 70), never the user's fault.
"""

from __future__ import annotations

from typing import Any


class TursiError(Exception):
    code = "tursi_error"
    http_status = 400
    exit_code = 1
    title = "Request failed"

    def __init__(self, detail: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers this error's response carries."""
        return {}

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://tursi.dev/errors/{self.code}",
            "title": self.title,
            "status": self.http_status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.hint:
            body["hint"] = self.hint
        body.update(self.extra)
        return body


class InvalidRequest(TursiError):
    code = "invalid_request"
    title = "Invalid request"
    exit_code = 64  # EX_USAGE


class InvalidSpec(InvalidRequest):
    code = "invalid_spec"
    title = "Invalid option"


class NotSupported(InvalidRequest):
    code = "not_supported"
    title = "Not supported yet"
    http_status = 501


class ModelNotFound(TursiError):
    code = "model_not_found"
    title = "Model not found"
    http_status = 404
    exit_code = 66  # EX_NOINPUT


class UnsafeModel(TursiError):
    code = "unsafe_model"
    title = "Model format refused"
    http_status = 422
    exit_code = 65  # EX_DATAERR


class DeploymentNotFound(TursiError):
    code = "deployment_not_found"
    title = "No such deployment"
    http_status = 404
    exit_code = 66


class DeploymentExists(TursiError):
    code = "deployment_exists"
    title = "Deployment name in use"
    http_status = 409
    exit_code = 73  # EX_CANTCREAT


class AmbiguousDeployment(InvalidRequest):
    code = "ambiguous_deployment"
    title = "Which deployment?"


class PortInUse(TursiError):
    code = "port_in_use"
    title = "Port in use"
    http_status = 409
    exit_code = 73


class ConversionFailed(TursiError):
    code = "conversion_failed"
    title = "Conversion failed"
    http_status = 422
    exit_code = 65


class PackBuildFailed(TursiError):
    """A tool a runtime pack is built with (pip, the cross-compiler) failed; its output's tail is in log_tail."""

    code = "pack_build_failed"
    title = "Runtime pack build failed"
    http_status = 500
    exit_code = 69  # EX_UNAVAILABLE: mostly a missing toolchain or no route to the package index


class WorkerFailed(TursiError):
    code = "worker_failed"
    title = "Worker did not become ready"
    http_status = 500
    exit_code = 69  # EX_UNAVAILABLE


class DeploymentNotRunning(TursiError):
    code = "deployment_not_running"
    title = "Deployment is not running"
    http_status = 503
    exit_code = 69


class WorkerUnreachable(TursiError):
    """The gateway could not reach a deployment's worker (refused, reset or gone before it answered)."""

    code = "worker_unreachable"
    title = "The deployment's worker did not answer"
    http_status = 502
    exit_code = 69


class InsufficientMemory(TursiError):
    code = "insufficient_memory"
    title = "Not enough memory to load the model"
    http_status = 503
    exit_code = 75


class DaemonUnavailable(TursiError):
    code = "daemon_unavailable"
    title = "tursid is not reachable"
    http_status = 503
    exit_code = 69


class DaemonAlreadyRunning(TursiError):
    code = "daemon_already_running"
    title = "tursid already running"
    http_status = 409
    exit_code = 75  # EX_TEMPFAIL


class NotReady(TursiError):
    code = "not_ready"
    title = "Model not loaded yet"
    http_status = 503
    exit_code = 75


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"
    title = "Prompt longer than the context"


class UnsupportedTask(InvalidRequest):
    code = "unsupported_task"
    title = "This model does not do that"
    http_status = 404


class ServerBusy(TursiError):
    code = "server_busy"
    title = "Too many queued requests"
    http_status = 503
    exit_code = 75

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra.get("retry_after", 1))}


class Unauthorized(TursiError):
    code = "unauthorized"
    title = "Missing or wrong API key"
    http_status = 401
    exit_code = 77  # EX_NOPERM

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="tursi"'}


class RateLimited(TursiError):
    code = "rate_limited"
    title = "Too many requests"
    http_status = 429
    exit_code = 75

    def headers(self) -> dict[str, str]:
        return dict(self.extra.pop("_headers", {})) if "_headers" in self.extra else {}


class RequestTooLarge(InvalidRequest):
    code = "request_too_large"
    title = "The request body is over the limit"
    http_status = 413


class RequestTimeout(InvalidRequest):
    code = "request_timeout"
    title = "The request body did not arrive in time"
    http_status = 408


class HostNotAllowed(InvalidRequest):
    code = "host_not_allowed"
    title = "Host header not allowed on a loopback server"
    http_status = 421


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"
    title = "The request body's Content-Type is not accepted here"
    http_status = 415


class CrossSiteRequest(TursiError):
    code = "cross_site_request"
    title = "A state-changing request from another site"
    http_status = 403
    exit_code = 77  # EX_NOPERM


class SessionRequired(TursiError):
    code = "session_required"
    title = "The dashboard needs a session: open the link `tursi ui` prints"
    http_status = 401
    exit_code = 77  # EX_NOPERM


class CsrfFailed(TursiError):
    code = "csrf_failed"
    title = "A state-changing dashboard request without its session's CSRF token"
    http_status = 403
    exit_code = 77  # EX_NOPERM


class DiskFull(TursiError):
    code = "insufficient_storage"
    title = "No space left on the device"
    http_status = 507
    exit_code = 74  # EX_IOERR


class RegistryUnauthorized(TursiError):
    code = "registry_unauthorized"
    title = "The registry refused the credentials"
    http_status = 401
    exit_code = 77  # EX_NOPERM


class RegistryFailed(TursiError):
    code = "registry_error"
    title = "The registry answered with an error"
    http_status = 502
    exit_code = 69


class RegistryMalformed(RegistryFailed):
    """What a registry answered is not what the distribution spec allows (a digest that is not sha256 hex, a
    manifest over the size cap, a descriptor without a size, a body shorter than announced): nothing is used."""

    code = "registry_malformed"
    title = "The registry's answer is malformed"


class DigestMismatch(TursiError):
    code = "digest_mismatch"
    title = "A file does not match its checksum"
    http_status = 422
    exit_code = 65


class UnsafeBundle(TursiError):
    code = "unsafe_bundle"
    title = "The bundle is malformed or unsafe to unpack"
    http_status = 422
    exit_code = 65


class BundleTooLarge(TursiError):
    code = "bundle_too_large"
    title = "The bundle is over the size cap"
    http_status = 413
    exit_code = 65


class TargetMismatch(TursiError):
    code = "target_mismatch"
    title = "The bundle was built for other hardware"
    http_status = 409
    exit_code = 65


class ArtifactConflict(TursiError):
    code = "artifact_conflict"
    title = "An artifact with this key already exists with other content"
    http_status = 409
    exit_code = 65


class UnsupportedEncoding(InvalidRequest):
    code = "unsupported_encoding"
    title = "The upload must not be compressed in transit"
    http_status = 415


class TlsMismatch(TursiError):
    code = "tls_mismatch"
    title = "The daemon's TLS certificate is not the expected one"
    http_status = 495
    exit_code = 77


class InsecureTransport(TlsMismatch):
    code = "insecure_transport"
    title = "Refusing to send a token without TLS"


class InternalError(TursiError):
    code = "internal_error"
    title = "Internal error"
    http_status = 500
    exit_code = 70  # EX_SOFTWARE


def _all_classes() -> list[type[TursiError]]:
    seen: list[type[TursiError]] = []
    stack: list[type[TursiError]] = [TursiError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_for_code(code: str) -> type[TursiError]:
    """The error class for a stable code (used by the client to rebuild an API error)."""
    for cls in _all_classes():
        if cls.code == code:
            return cls
    return TursiError


def classify(exc: BaseException) -> type[TursiError]:
    """The most specific TursiError class in ``exc``'s MRO; InternalError for anything else."""
    for cls in type(exc).__mro__:
        if isinstance(cls, type) and issubclass(cls, TursiError):
            return cls
    return InternalError


def problem_for(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, TursiError):
        return exc.to_problem()
    return InternalError(f"internal error: {type(exc).__name__}", hint="see the tursid log").to_problem()
