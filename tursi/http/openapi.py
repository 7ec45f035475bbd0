"""OpenAPI 3.1 documents for the control API (tursid) and the inference API (workers), served at /openapi.json.

Every operation lists its success response and a ``default`` problem+json response: errors of any status
must still be a Problem. schemathesis checks both APIs against these in CI (tests/integration/test_openapi.py).
"""

from __future__ import annotations

from dataclasses import Field
from typing import Any

from tursi import __version__
from tursi.core.names import NAME_PATTERN
from tursi.core.spec import PAIR_VALUE, Option, option_of, spec_fields

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "hint": {"type": ["string", "null"]},
    },
}
NAME = {"type": "string", "pattern": NAME_PATTERN}
KEY = {"type": "string", "pattern": "^[0-9a-f]{4,32}$"}
OBJ: dict[str, Any] = {"type": "object"}
UPLOAD_TYPES = ("application/x-tar", "application/octet-stream")  # what tursi.http.guards accepts on a bundle upload


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], body: dict[str, Any] | None = None, params: list | None = None) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", **ok},
            "default": {"description": "A problem", "content": {"application/problem+json": {"schema": PROBLEM}}},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _text(media: str = "text/plain") -> dict[str, Any]:
    return {"content": {media: {"schema": {"type": "string"}}}}


DEPLOYMENT = {
    "type": "object",
    "required": ["name", "model", "status", "endpoint", "format", "quantization"],
    "properties": {
        "name": NAME,
        "model": {"type": "string"},
        "status": {"type": "string"},
        "endpoint": {"type": "string"},
        "format": {"type": "string"},
        "quantization": {"type": "string"},
    },
}
JSON_TYPES = {"str": "string", "file": "string", "int": "integer", "float": "number", "bool": "boolean"}


def spec_body(*groups: str) -> dict[str, Any]:
    """The request schema of the deployment spec's fields of ``groups`` (default: all), as tursi.core.spec declares
    them: types, ranges, enums, patterns, defaults and descriptions."""
    chosen = spec_fields(*groups)
    return {
        "type": "object",
        "required": [f.name for f in chosen if option_of(f).required],
        "properties": {f.name: field_schema(f) for f in chosen},
    }


def field_schema(f: Field[Any]) -> dict[str, Any]:
    """One spec field as JSON Schema. A field whose ``auto`` value lies outside its range takes either."""
    opt = option_of(f)
    schema = _pairs_schema(opt) if opt.kind == "pairs" else _value_schema(opt)
    if opt.auto is not None:
        schema = {"anyOf": [{"const": opt.auto}, schema]}
    if f.default is not None and not opt.required:
        schema["default"] = f.default
    described = f" Default: {opt.default_text}." if opt.default_text else ""
    return {**schema, "description": opt.help + described}


def _value_schema(opt: Option) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": list(opt.choices)} if opt.kind == "choice" else {"type": JSON_TYPES[opt.kind]}
    schema.update({k: v for k, v in (("minimum", opt.minimum), ("maximum", opt.maximum)) if v is not None})
    if opt.pattern is not None:
        schema["pattern"] = f"^{opt.pattern}$"
    return schema


def _pairs_schema(opt: Option) -> dict[str, Any]:
    """KEY=VALUE pairs as an object: keys match the pattern, values are printable strings, at most ``maximum``."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": {"type": "string", "pattern": f"^{PAIR_VALUE}$"},
    }
    if opt.pattern is not None:
        schema["propertyNames"] = {"pattern": f"^{opt.pattern}$"}
    if opt.maximum is not None:
        schema["maxProperties"] = int(opt.maximum)
    return schema


REMOVED = {
    "type": "object",
    "required": ["removed"],
    "properties": {"removed": {"type": "array", "items": {"type": "string"}}},
}
FREED = {
    "type": "object",
    "required": ["removed", "freed_bytes"],
    "properties": {"removed": {"type": "array", "items": {"type": "string"}}, "freed_bytes": {"type": "integer"}},
}


def control() -> dict[str, Any]:
    name, key = _path_param("name", NAME), _path_param("key", KEY)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tursi control API (tursid)", "version": __version__},
        "paths": {
            "/health": {"get": _op("Liveness", _json({"type": "object", "required": ["status", "version", "pid"]}))},
            "/openapi.json": {"get": _op("This document", _json(OBJ))},
            "/metrics": {"get": _op("Prometheus metrics", _text())},
            "/v1/system": {"get": _op("Hardware profile, versions, targets", _json(OBJ))},
            "/v1/stats": {"get": _op("The latest resource sample", _json(OBJ))},
            "/v1/deployments": {
                "get": _op(
                    "List deployments (ps)",
                    _json({"type": "array", "items": DEPLOYMENT}),
                    params=[_query("all", {"enum": ["0", "1", "true", "false"]})],
                ),
                "post": _op(
                    "Deploy a model (up): NDJSON progress events, then ready or error",
                    _text("application/x-ndjson"),
                    _json(spec_body()),
                ),
                "delete": _op("Remove every deployment", _json(REMOVED)),
            },
            "/v1/deployments/{name}": {
                "get": _op("Inspect", _json(DEPLOYMENT), params=[name]),
                "delete": _op("Remove (down)", _json(REMOVED), params=[name]),
            },
            "/v1/deployments/{name}/stop": {
                "post": _op(
                    "Unload (stop): the worker stops, the deployment stays idle on its port",
                    _json(DEPLOYMENT),
                    params=[name],
                )
            },
            "/v1/deployments/{name}/start": {
                "post": _op(
                    "Load (start) an idle, exited or failed deployment; answers once ready",
                    _json(DEPLOYMENT),
                    params=[name],
                )
            },
            "/v1/deployments/{name}/logs": {
                "get": _op(
                    "Log lines",
                    _text(),
                    params=[
                        name,
                        _query("tail", {"type": "integer"}),
                        _query("since", {"type": "string"}),
                        _query("timestamps", {"enum": ["0", "1"]}),
                    ],
                ),
            },
            "/v1/registry/tags": {
                "get": _op(
                    "Registry references this daemon knows artifacts by", _json({"type": "array", "items": OBJ})
                ),
                "post": _op(
                    "Tag: name an artifact (deployment, key or tag) with a registry reference", _json(OBJ), _json(OBJ)
                ),
            },
            "/v1/registry/push": {
                "post": _op("Push the artifact tagged `ref` to its registry", _json(OBJ), _json(OBJ))
            },
            "/v1/registry/push-index": {
                "post": _op(
                    "Push several artifacts (built for target profiles) as one multi-target tag", _json(OBJ), _json(OBJ)
                )
            },
            "/v1/registry/pull": {
                "post": _op(
                    "Pull `ref` into the artifact cache, every blob checked; with `stream: true`, NDJSON `bytes`"
                    " events while layers download, then `pulled`",
                    _json(OBJ),
                    _json(OBJ),
                )
            },
            "/v1/registry/login": {
                "post": _op("Keep the daemon's own credentials for a registry", _json(OBJ), _json(OBJ))
            },
            "/v1/plan": {
                "post": _op(
                    "Preview up (up --dry-run): the plan, its reasons, the cached artifact if any, the expected size"
                    " and memory; nothing converted, recorded or started",
                    _json(OBJ),
                    _json(spec_body()),
                )
            },
            "/v1/registry/login/{registry}": {
                "delete": _op(
                    "Forget the daemon's credentials for a registry",
                    _json(OBJ),
                    params=[_path_param("registry", {"type": "string"})],
                )
            },
            "/v1/artifacts": {"get": _op("Cached artifacts (images)", _json({"type": "array", "items": OBJ}))},
            "/v1/artifacts/{key}": {"delete": _op("Remove an unused artifact (rmi)", _json(FREED), params=[key])},
            "/v1/artifacts/prune": {"post": _op("Remove unused artifacts", _json(FREED))},
            "/v1/artifacts/build": {
                "post": _op(
                    "Convert for a target profile into the cache",
                    _text("application/x-ndjson"),
                    _json(spec_body("source", "conversion")),
                ),
            },
            "/v1/artifacts/{key}/bundle": {
                "get": _op(
                    "The artifact as a .tursi tar", _text("application/x-tar"), params=[key, _query("name", NAME)]
                ),
            },
            "/v1/artifacts/load": {
                "post": _op(
                    "Import a .tursi bundle",
                    _json(OBJ),
                    {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES}},
                    params=[_query("force", {"enum": ["0", "1"]})],
                ),
            },
        },
    }


EMBEDDINGS_BODY = {
    "type": "object",
    "properties": {
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "model": {"type": "string"},
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer"},
    },
}
EMBEDDINGS_OUT = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"]}},
        "model": {"type": "string"},
        "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"]},
    },
}
SAMPLING = {
    "max_tokens": {"type": ["integer", "null"]},
    "max_completion_tokens": {"type": ["integer", "null"]},
    "temperature": {"type": "number"},
    "top_p": {"type": "number"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "seed": {"type": "integer"},
    "n": {"type": "integer", "minimum": 1, "maximum": 8, "description": "choices, each sampled in its own slot"},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "cache_prompt": {
        "type": "boolean",
        "description": "reuse a slot's KV cache for the prompt's common prefix (default true)",
    },
    "user": {"type": "string"},
    "model": {"type": "string"},
    "response_format": {
        "type": "object",
        "description": "json_object or json_schema: the reply is JSON (valid against the schema), enforced while "
        "sampling; a schema keyword that cannot be enforced is a 400 unsupported_schema naming it",
        "properties": {
            "type": {"enum": ["text", "json_object", "json_schema"]},
            "json_schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "schema": {"type": "object"}, "strict": {"type": "boolean"}},
            },
        },
        "required": ["type"],
    },
}
TOOL = {
    "type": "object",
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "parameters": {"type": "object"},
            },
            "required": ["name"],
        },
    },
    "required": ["type", "function"],
}
TOOL_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
            "required": ["name", "arguments"],
        },
    },
    "required": ["id", "function"],
}
CHAT_BODY = {
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"enum": ["system", "user", "assistant", "tool"]},
                    "content": {"type": ["string", "null"]},
                    "name": {"type": "string"},
                    "tool_calls": {"type": "array", "items": TOOL_CALL},
                    "tool_call_id": {"type": "string"},
                },
                "required": ["role"],
            },
        },
        "tools": {"type": "array", "items": TOOL},
        "tool_choice": {
            "oneOf": [
                {"enum": ["none", "auto", "required"]},
                {"type": "object", "properties": {"type": {"const": "function"}, "function": {"type": "object"}}},
            ]
        },
        "parallel_tool_calls": {"type": "boolean"},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        **SAMPLING,
    },
}
COMPLETION_BODY = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
        **SAMPLING,
    },
}
TASK_BODY = {
    "type": "object",
    "properties": {
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "top_k": {"type": "integer"},
        "model": {"type": "string"},
    },
}
CHOICES = {"type": "object", "required": ["object", "choices", "model"]}


RERANK_BODY = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "query": {"type": "string", "minLength": 1},
        "documents": {
            "type": "array",
            "items": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"text": {"type": "string"}}}]},
        },
        "top_n": {"type": "integer", "minimum": 1},
        "return_documents": {"type": "boolean"},
    },
    "required": ["query", "documents"],
}
RERANK_OUT = {"type": "object", "required": ["results", "model", "usage"]}
OLLAMA_OPTIONS = {
    "type": "object",
    "description": "temperature, top_p, top_k, min_p, seed, num_predict, stop, presence_penalty, frequency_penalty, "
    "repeat_penalty, repeat_last_n, num_ctx (at most the deployment's); load-time options (num_gpu, num_thread, ...) "
    "are accepted and have no effect; any other key is a 400",
}
OLLAMA_FORMAT = {"oneOf": [{"const": "json"}, {"type": "object"}]}
OLLAMA_MODEL_ONLY = {"type": "object", "properties": {"model": {"type": "string"}}, "required": ["model"]}
OLLAMA_CHAT = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean"},
        "format": OLLAMA_FORMAT,
        "options": OLLAMA_OPTIONS,
        "keep_alive": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "tools": {"type": "array", "items": TOOL},
    },
    "required": ["model"],
}
OLLAMA_GENERATE = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "prompt": {"type": "string"},
        "system": {"type": "string"},
        "raw": {"type": "boolean"},
        "stream": {"type": "boolean"},
        "format": OLLAMA_FORMAT,
        "options": OLLAMA_OPTIONS,
        "keep_alive": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    },
    "required": ["model"],
}
OLLAMA_EMBED = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "keep_alive": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    },
    "required": ["model"],
}
OLLAMA_EMBED_OLD = {
    "type": "object",
    "properties": {"model": {"type": "string"}, "prompt": {"type": "string"}},
    "required": ["model", "prompt"],
}
OLLAMA_MODELS = {"type": "object", "required": ["models"]}


def _ollama(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    op = _op(summary, _json(OBJ), _json(body))
    op["responses"]["200"]["content"]["application/x-ndjson"] = {"schema": {"type": "string"}}
    return op


def _generation(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    op = _op(summary, _json(CHOICES), _json(body))
    op["responses"]["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return op


def inference() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tursi inference API (a worker; OpenAI-compatible routes)", "version": __version__},
        "paths": {
            "/health": {"get": _op("Liveness", _json(OBJ))},
            "/ready": {"get": _op("Ready once the model is loaded (else 503 not_ready)", _json(OBJ))},
            "/openapi.json": {"get": _op("This document", _json(OBJ))},
            "/metrics": {"get": _op("Prometheus metrics", _text())},
            "/v1/models": {"get": _op("The model served here", _json({"type": "object", "required": ["data"]}))},
            "/v1/embeddings": {"post": _op("Embeddings", _json(EMBEDDINGS_OUT), _json(EMBEDDINGS_BODY))},
            "/v1/chat/completions": {"post": _generation("Chat completion", CHAT_BODY)},
            "/v1/completions": {"post": _generation("Text completion", COMPLETION_BODY)},
            "/v1/classify": {"post": _op("Classification", _json(OBJ), _json(TASK_BODY))},
            "/v1/fill-mask": {"post": _op("Fill the mask", _json(OBJ), _json(TASK_BODY))},
            "/v1/rerank": {
                "post": _op("Rerank documents by relevance (cross-encoders)", _json(RERANK_OUT), _json(RERANK_BODY))
            },
            "/rerank": {"post": _op("Same as /v1/rerank (llama-server's path)", _json(RERANK_OUT), _json(RERANK_BODY))},
            "/api/version": {"get": _op("Ollama: server version", _json(OBJ))},
            "/api/tags": {"get": _op("Ollama: the model served here", _json(OLLAMA_MODELS))},
            "/api/ps": {"get": _op("Ollama: loaded models", _json(OLLAMA_MODELS))},
            "/api/show": {"post": _op("Ollama: model details", _json(OBJ), _json(OLLAMA_MODEL_ONLY))},
            "/api/chat": {"post": _ollama("Ollama: chat (NDJSON stream unless stream is false)", OLLAMA_CHAT)},
            "/api/generate": {
                "post": _ollama("Ollama: generate (NDJSON stream unless stream is false)", OLLAMA_GENERATE)
            },
            "/api/embed": {"post": _op("Ollama: embeddings", _json(OBJ), _json(OLLAMA_EMBED))},
            "/api/embeddings": {"post": _op("Ollama: embeddings (older route)", _json(OBJ), _json(OLLAMA_EMBED_OLD))},
        },
    }
