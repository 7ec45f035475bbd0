"""tursid's copy of the worker's routes (tursi/http/worker_routes.py) matches what the worker serves: a route the
table missed would be refused at the gateway (404), one it had that the worker lacks would load a model for a 404."""

from __future__ import annotations

from aiohttp import web

from tursi.http.worker_routes import MODEL_ROUTES, OPEN_PATHS, authorized, presented_key


def test_the_table_is_the_workers_routes() -> None:
    from tursi.worker import app, embeddings, generation, ollama_api, tasks

    served: set[tuple[str, str]] = set()
    for table in (app.routes, embeddings.routes, generation.routes, tasks.routes, ollama_api.routes):
        served |= {(r.method, r.path) for r in table if isinstance(r, web.RouteDef)}
    assert {route for route in served if route[1] not in OPEN_PATHS} == MODEL_ROUTES
    assert {path for _, path in served} >= set(OPEN_PATHS)


def test_a_key_is_needed_except_on_open_paths() -> None:
    from tursi.http.apikeys import digest

    stored = digest("the-key")
    assert authorized("/v1/embeddings", "Bearer the-key", "", stored)
    assert authorized("/v1/embeddings", "", "the-key", stored)
    assert not authorized("/v1/embeddings", "Bearer wrong", "", stored)
    assert not authorized("/v1/embeddings", "", "", stored)
    assert authorized("/health", "", "", stored)
    assert authorized("/v1/embeddings", "", "", None)
    assert presented_key("bearer  spaced ", "") == "spaced"
