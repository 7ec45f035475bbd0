"""Ollama-shaped requests as the worker's GenerationRequest: ``options``, ``format``, ``tools``, ``stream``.

As on the OpenAI routes, a field is applied or refused, never silently dropped, with two documented exceptions:
``keep_alive`` (honoured by tursid's gateway, which loads and unloads workers; on a worker's own port accepted and
left to the deployment's ``--keep-alive``) and the load-time ``options`` Ollama reads
when it starts a runner (``LOAD_OPTIONS``: GPU layers, threads, mmap, ...), which a running Tursi worker has already
fixed with its own settings. ``num_ctx`` may ask for at most the deployment's context.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from runtimes.llama_sampling import Sampling
from tursi.core.errors import InvalidRequest, ModelNotFound
from tursi.http.guards import parse_json_text
from tursi.worker.openai_params import GenerationRequest, _content, _number, _optional_int, parse_generation
from tursi.worker.state import WorkerState
from tursi.worker.structured import check_tool_messages, response_grammar

SAMPLING_OPTIONS = {
    "temperature", "top_p", "top_k", "min_p", "seed", "num_predict", "stop", "presence_penalty",
    "frequency_penalty", "repeat_penalty", "repeat_last_n", "num_ctx",
}  # fmt: skip
LOAD_OPTIONS = {
    "num_gpu", "main_gpu", "num_thread", "num_batch", "use_mmap", "use_mlock", "numa", "low_vram", "vocab_only",
    "num_keep", "f16_kv",
}  # fmt: skip
CHAT_FIELDS = {"model", "messages", "stream", "format", "options", "keep_alive", "tools", "think"}
GENERATE_FIELDS = {"model", "prompt", "system", "stream", "format", "options", "keep_alive", "raw", "think"}
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class OllamaRequest:
    gen: GenerationRequest
    prompt: str | list[dict[str, Any]] | None  # /api/generate: raw text or a user turn (None: a preload)
    num_ctx: int | None = None  # the context the client asks for: at most the deployment's


def _bad(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}", param=field)


def check_ollama_model(st: WorkerState, body: dict[str, Any], required: bool) -> None:
    """Ollama names carry a tag (``smollm2:latest``); this worker's model answers to its name with or without
    ``:latest``, and to the reference it was deployed from."""
    model = body.get("model")
    if model is None and not required:
        return
    if not isinstance(model, str) or not model:
        raise _bad("model", "is required (a model name)")
    name = model.removesuffix(":latest")
    if name not in st.model_ids():
        raise ModelNotFound(f"model '{model}' is not served here", hint=f"use {st.name} (or {st.name}:latest)")


def parse_ollama(body: dict[str, Any], chat: bool, tool_format: str | None = None) -> OllamaRequest:
    stream, options = _check_fields(body, chat)
    openai_like: dict[str, Any] = {"stream": False}
    if chat and body.get("tools") is not None:
        openai_like["tools"] = body["tools"]
    fmt = _format(body.get("format"))
    if fmt is not None:
        openai_like["response_format"] = fmt
    gen = parse_generation(
        openai_like, chat=chat, tool_format=tool_format
    )  # tools and format checked as on the OpenAI route
    sampling = _sampling(options, gen.sampling)
    if gen.tools is None and fmt is not None:
        sampling = replace(sampling, grammar=response_grammar(openai_like))
    gen = replace(gen, sampling=sampling, stream=stream)
    return OllamaRequest(gen, None if chat else _prompt(body), _optional_int(options, "num_ctx", 1))


def _check_fields(body: dict[str, Any], chat: bool) -> tuple[bool, dict[str, Any]]:
    """(stream, options) once every top-level field is known and well-typed."""
    known = CHAT_FIELDS if chat else GENERATE_FIELDS
    for field in body:
        if field not in known:
            raise _bad(field, "is not a parameter of this route")
    if body.get("think") not in (None, False):
        raise _bad("think", "is not supported by this model (only false)")
    stream = body.get("stream", True)  # Ollama streams unless told not to
    if not isinstance(stream, bool):
        raise _bad("stream", "must be true or false")
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and (isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int | float)):
        raise _bad("keep_alive", 'must be a duration ("5m") or a number of seconds')
    options = body.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise _bad("options", "must be an object")
    for key in options:
        if key not in SAMPLING_OPTIONS and key not in LOAD_OPTIONS:
            raise _bad(f"options.{key}", "is not an option of this server")
    return stream, options


def _prompt(body: dict[str, Any]) -> str | list[dict[str, Any]] | None:
    """/api/generate's input: with ``raw`` the text as is; else, as Ollama does, a user turn (after ``system``)
    rendered by the model's chat template. None: nothing to generate (a preload)."""
    raw = body.get("prompt")
    if raw is not None and not isinstance(raw, str):
        raise _bad("prompt", "must be a string")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise _bad("system", "must be a string")
    as_is = body.get("raw", False)
    if not isinstance(as_is, bool):
        raise _bad("raw", "must be true or false")
    if as_is and system:
        raise _bad("system", "cannot be combined with raw")
    if not raw:
        return None
    if as_is:
        return raw
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": raw}]


def _format(fmt: Any) -> dict[str, Any] | None:
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise _bad("format", 'must be "json" or a JSON schema')


def _sampling(options: dict[str, Any], base: Sampling) -> Sampling:
    """Ollama's option names and defaults (temperature 0.8, top_p 0.9, top_k 40, repeat_penalty 1.1 over the
    last 64 tokens), checked like the OpenAI fields."""
    try:
        predict = _optional_int(options, "num_predict", -2)
    except InvalidRequest:
        raise _bad("options.num_predict", "must be an integer >= -2 (-1: no limit)") from None
    stop = options.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 16:
            raise _bad("options.stop", "must be a non-empty string or a list of at most 16 non-empty strings")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("options.seed", "must be an integer")
    return replace(
        base,
        max_tokens=predict if predict is not None and predict > 0 else None,  # -1: no limit, -2: fill the context
        temperature=_opt(options, "temperature", 0.8, 0.0, 2.0),
        top_p=_opt(options, "top_p", 0.9, 0.0, 1.0, lo_open=True),
        top_k=int(_opt(options, "top_k", 40, 0, 1000)),
        min_p=_opt(options, "min_p", 0.0, 0.0, 1.0),
        stop=tuple([stop] if isinstance(stop, str) else stop or ()),
        seed=seed if seed is None or seed >= 0 else None,  # Ollama: -1 is "random"
        presence_penalty=_opt(options, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_opt(options, "frequency_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=_opt(options, "repeat_penalty", 1.1, 0.0, 2.0),
        repeat_last_n=int(_opt(options, "repeat_last_n", 64, 0, 4096)),
    )


def _opt(options: dict[str, Any], key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        return _number(options, key, default, lo, hi, lo_open)
    except InvalidRequest as e:
        raise InvalidRequest(f"'options.{key}' {str(e).split(' ', 1)[1]}", param=f"options.{key}") from None


def parse_ollama_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Ollama messages: role, content, optional tool_calls (arguments as objects) and tool_name; empty means a
    preload. Images are refused (text models)."""
    messages = body.get("messages", [])
    if not isinstance(messages, list):
        raise _bad("messages", "must be a list")
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise _bad(f"{field}.role", f"must be one of {', '.join(ROLES)}")
        for key in msg:
            if key not in ("role", "content", "images", "tool_calls", "tool_name", "thinking"):
                raise _bad(f"{field}.{key}", "is not a field of a message")
        if msg.get("images"):
            raise _bad(f"{field}.images", "is not supported: this is a text model")
        text = _content(msg.get("content") or "", f"{field}.content")
        entry: dict[str, Any] = {"role": msg["role"], "content": text}
        calls = msg.get("tool_calls")
        if calls:
            entry["tool_calls"] = _calls(calls, f"{field}.tool_calls", i)
        if msg["role"] == "tool":  # Ollama links results to calls by order and name, not by id
            entry["tool_call_id"] = _last_call_id(out)
        out.append(entry)
    check_tool_messages(out)
    return out


def _calls(calls: Any, field: str, i: int) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise _bad(field, "must be a list")
    out = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"{field}[{k}]", "must be {'function': {'name', 'arguments'}}")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = parse_json_text(args, f"{field}[{k}].function.arguments")
        out.append({"id": f"call_{i}_{k}", "name": fn["name"], "arguments": args})
    return out


def _last_call_id(messages: list[dict[str, Any]]) -> str | None:
    for msg in reversed(messages):
        for call in reversed(msg.get("tool_calls") or []):
            return str(call["id"])
    return None
