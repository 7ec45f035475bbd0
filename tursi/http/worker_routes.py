"""The routes a worker serves, as tursid's gateway and an idle port's waker need them without importing the worker:
which requests may load a model (and so must be authorized first), and which paths are open to anyone.
tests/unit/test_worker_routes.py checks this table against the worker's own route definitions."""

from __future__ import annotations

from tursi.http.apikeys import matches

OPEN_PATHS = ("/health", "/ready", "/metrics")  # answered without an API key

# Requests that need the model: through the gateway or on an idle port, these (and only these) load it.
MODEL_ROUTES = frozenset(
    {("POST", p) for p in ("/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/classify")}
    | {("POST", p) for p in ("/v1/fill-mask", "/v1/rerank", "/rerank")}
    | {("POST", p) for p in ("/api/show", "/api/chat", "/api/generate", "/api/embed", "/api/embeddings")}
    | {("GET", p) for p in ("/v1/models", "/openapi.json", "/api/version", "/api/tags", "/api/ps")}
)


def presented_key(authorization: str, x_api_key: str) -> str:
    """The API key a request presents: ``Authorization: Bearer KEY``, else ``X-Api-Key``."""
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else x_api_key


def authorized(path: str, authorization: str, x_api_key: str, api_key_sha256: str | None) -> bool:
    """Whether a request with these headers may use ``path`` of a deployment whose key is ``api_key_sha256``."""
    if not api_key_sha256 or path in OPEN_PATHS:
        return True
    key = presented_key(authorization, x_api_key)
    return bool(key) and matches(key, api_key_sha256)
