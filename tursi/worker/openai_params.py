"""Validate OpenAI-shaped generation requests; each error names the offending field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtimes.llama_runtime import Sampling
from tursi.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool")
UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format", "logit_bias", "suffix")
MAX_STOP = 4


@dataclass(frozen=True)
class GenerationRequest:
    sampling: Sampling
    stream: bool
    include_usage: bool


def _bad(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}", param=field)


def _number(body: dict[str, Any], field: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number")
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


def parse_generation(body: dict[str, Any]) -> GenerationRequest:
    for field in UNSUPPORTED:
        if body.get(field) not in (None, [], {}):
            raise _bad(field, "is not supported by this server")
    if body.get("logprobs") not in (None, False, 0):
        raise _bad("logprobs", "is not supported by this server")
    if body.get("n") not in (None, 1):
        raise _bad("n", "must be 1")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream", "must be true or false")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options", "must be an object")
    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", 1)
    sampling = Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.8, 0.0, 2.0),
        top_p=_number(body, "top_p", 0.95, 0.0, 1.0, lo_open=True),
        stop=_stop(body),
        seed=_optional_int(body, "seed", -(2**63)),
    )
    return GenerationRequest(sampling, stream, bool(options and options.get("include_usage")))


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list")
    out = []
    for i, msg in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(field, "must be an object")
        if msg.get("role") not in ROLES:
            raise _bad(f"{field}.role", f"must be one of {', '.join(ROLES)}")
        out.append({"role": msg["role"], "content": _content(msg.get("content"), f"{field}.content")})
    return out


def _content(content: Any, field: str) -> str:
    if content is None:
        return ""
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
