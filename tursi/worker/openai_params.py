"""Validate OpenAI-shaped generation requests; each error names the offending field.

A field is either applied or refused: a request never gets an answer that silently ignored part of it. The only
exception is ``user``, OpenAI's end-user id for abuse tracking, which by definition does not change the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runtimes.llama_sampling import Sampling
from tursi.core.errors import InvalidRequest
from tursi.http.guards import parse_json_text
from tursi.worker.structured import Tools, check_tool_messages, parse_tools, response_grammar

ROLES = ("system", "developer", "user", "assistant", "tool")
UNSUPPORTED = ("functions", "function_call", "logit_bias", "suffix")  # accepted only when empty
MAX_STOP = 4
COMMON_FIELDS = {
    "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n", "stream",
    "stream_options", "presence_penalty", "frequency_penalty", "logprobs", "user", "cache_prompt", "response_format",
    *UNSUPPORTED,
}  # fmt: skip
ROUTE_FIELDS = {
    True: {"messages", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls"},
    False: {"prompt", "echo", "best_of"},
}
OFF_ONLY = {"echo": (False,), "best_of": (1,)}
MAX_N = 8  # choices per request: each is a slot of its own
MAX_TOP_LOGPROBS = {True: 20, False: 5}  # OpenAI's limits: chat top_logprobs, legacy completions logprobs
MESSAGE_TEXT = ("name", "tool_call_id")  # optional strings a template may render (as plain text, never control)
MESSAGE_EMPTY = ("function_call", "refusal", "audio")  # accepted only when empty


@dataclass(frozen=True)
class GenerationRequest:
    sampling: Sampling
    stream: bool
    include_usage: bool
    cache_prompt: bool = True  # reuse a slot's KV for the prompt's common prefix (llama-server's field name)
    tools: Tools | None = None  # declared functions the reply may (or must) call
    n: int = 1  # choices, each sampled in its own slot


def _bad(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}", param=field)


def _number(body: dict[str, Any], field: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):  # NaN compares false with any bound
        raise _bad(field, "must be a finite number")
    if value > hi or value < lo or (lo_open and value == lo):
        raise _bad(field, f"must be in {'(' if lo_open else '['}{lo}, {hi}]")
    return float(value)


def _optional_int(body: dict[str, Any], field: str, lo: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise _bad(field, f"must be an integer >= {lo}")
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items) or len(items) > MAX_STOP:
        raise _bad("stop", f"must be a non-empty string or a list of at most {MAX_STOP} non-empty strings")
    return tuple(items)


def _check_fields(body: dict[str, Any], chat: bool) -> None:
    known = COMMON_FIELDS | ROUTE_FIELDS[chat]
    for field in body:
        if field not in known:
            raise _bad(field, "is not a parameter of this route")
    for field in UNSUPPORTED:
        if body.get(field) not in (None, [], {}):
            raise _bad(field, "is not supported by this server")
    for field, off in OFF_ONLY.items():
        value = body.get(field)
        if value is not None and not any(value == v and type(value) is type(v) for v in off):
            raise _bad(field, f"is not supported by this server (only {off[0]!r})")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "must be a string")


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "must be true or false")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise _bad("stream_options", "must be an object with at most 'include_usage'")
    if not stream:
        raise _bad("stream_options", "is only allowed when 'stream' is true")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _bad("stream_options.include_usage", "must be true or false")
    return stream, include_usage


def _logprobs(body: dict[str, Any], chat: bool) -> int | None:
    """None (off) or how many alternatives each token reports: chat ``logprobs: true`` + ``top_logprobs``,
    completions ``logprobs: N``."""
    top_max = MAX_TOP_LOGPROBS[chat]
    if not chat:
        value = _optional_int(body, "logprobs", 0)
        if value is not None and value > top_max:
            raise _bad("logprobs", f"must be an integer in [0, {top_max}]")
        return value
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise _bad("logprobs", "must be true or false")
    top = _optional_int(body, "top_logprobs", 0)
    if top is not None and top > top_max:
        raise _bad("top_logprobs", f"must be an integer in [0, {top_max}]")
    if top is not None and not wanted:
        raise _bad("top_logprobs", "needs 'logprobs': true")
    return (top or 0) if wanted else None


def _max_tokens(body: dict[str, Any]) -> int | None:
    newer = _optional_int(body, "max_completion_tokens", 1)
    older = _optional_int(body, "max_tokens", 1)
    if newer is not None and older is not None and newer != older:
        raise _bad("max_tokens", "and 'max_completion_tokens' disagree; send one of them")
    return newer if newer is not None else older


def parse_generation(body: dict[str, Any], chat: bool = True, tool_format: str | None = None) -> GenerationRequest:
    _check_fields(body, chat)
    stream, include_usage = _stream(body)
    tools = parse_tools(body, tool_format) if chat else None
    grammar = response_grammar(body)
    if tools is not None and grammar is not None:
        raise _bad("response_format", "cannot be combined with tools unless 'tool_choice' is 'none'")
    sampling = Sampling(
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0.8, 0.0, 2.0),
        top_p=_number(body, "top_p", 0.95, 0.0, 1.0, lo_open=True),
        stop=_stop(body),
        seed=_optional_int(body, "seed", -(2**63)),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        grammar=tools.grammar if tools is not None else grammar,
        logprobs=_logprobs(body, chat),
    )
    cache_prompt = body.get("cache_prompt", True)
    if not isinstance(cache_prompt, bool):
        raise _bad("cache_prompt", "must be true or false")
    n = _optional_int(body, "n", 1) or 1
    if n > MAX_N:
        raise _bad("n", f"must be an integer in [1, {MAX_N}]")
    return GenerationRequest(sampling, stream, include_usage, cache_prompt, tools, n)


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list")
    out = [_message(msg, f"messages[{i}]") for i, msg in enumerate(messages)]
    check_tool_messages(out)
    return out


def _message(msg: Any, field: str) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise _bad(field, "must be an object")
    if msg.get("role") not in ROLES:
        raise _bad(f"{field}.role", f"must be one of {', '.join(ROLES)}")
    for key in msg:
        if key not in ("role", "content", "tool_calls", *MESSAGE_TEXT, *MESSAGE_EMPTY):
            raise _bad(f"{field}.{key}", "is not a field of a message")
    for key in MESSAGE_EMPTY:
        if msg.get(key) not in (None, [], {}, ""):
            raise _bad(f"{field}.{key}", "is not supported by this server")
    if msg.get("tool_calls") not in (None, []):
        return _assistant_calls(msg, field)
    if "content" not in msg or msg["content"] is None:
        raise _bad(f"{field}.content", "is required")
    out = {"role": msg["role"], "content": _content(msg["content"], f"{field}.content")}
    for key in MESSAGE_TEXT:
        if msg.get(key) is not None:
            if not isinstance(msg[key], str):
                raise _bad(f"{field}.{key}", "must be a string")
            out[key] = msg[key]
    return out


def _assistant_calls(msg: dict[str, Any], field: str) -> dict[str, Any]:
    if msg["role"] != "assistant":
        raise _bad(f"{field}.tool_calls", "is only allowed in assistant messages")
    content = msg.get("content")
    text = "" if content is None else _content(content, f"{field}.content")
    return {"role": "assistant", "content": text, "tool_calls": _tool_calls(msg["tool_calls"], f"{field}.tool_calls")}


def _tool_calls(calls: Any, field: str) -> list[dict[str, Any]]:
    """An assistant message's earlier calls: id, function name and its arguments (a JSON text, parsed)."""
    if not isinstance(calls, list):
        raise _bad(field, "must be a list")
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(fn, dict):
            raise _bad(f"{field}[{i}]", "must be {'id', 'type': 'function', 'function': {'name', 'arguments'}}")
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise _bad(f"{field}[{i}].function", "needs 'name' and 'arguments' (a JSON text)")
        arguments = parse_json_text(fn["arguments"], f"{field}[{i}].function.arguments")
        out.append({"id": call["id"], "name": fn["name"], "arguments": arguments})
    return out


def _content(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(field, "parts must be {'type': 'text', 'text': ...}; images and audio are not supported")
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(field, "must be a string or a list of text parts")


def parse_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _bad("prompt", "must be a non-empty string (one prompt per request)")
    return prompt
