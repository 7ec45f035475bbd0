"""Ollama requests as the worker reads them: options, formats, prompts and the shape of a tool call's answer."""

from __future__ import annotations

from typing import Any

import pytest

from tursi.core.errors import InvalidRequest
from tursi.worker.ollama_api import _fill_final
from tursi.worker.ollama_params import parse_ollama, parse_ollama_messages

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    },
}


def test_options_map_onto_the_sampler_with_ollamas_defaults() -> None:
    req = parse_ollama({"options": {"num_predict": 5, "top_k": 7, "seed": 3, "stop": "END"}}, chat=True)
    s = req.gen.sampling
    assert (s.max_tokens, s.top_k, s.seed, s.stop) == (5, 7, 3, ("END",))
    assert (s.temperature, s.top_p, s.repeat_penalty, s.min_p) == (0.8, 0.9, 1.1, 0.0)  # Ollama's defaults
    assert req.gen.stream is True  # Ollama streams unless told not to
    assert parse_ollama({"options": {"num_predict": -1}}, chat=True).gen.sampling.max_tokens is None
    assert parse_ollama({"options": {"num_gpu": 99, "use_mmap": True}}, chat=True).gen.sampling.top_k == 40


def test_generate_templates_the_prompt_unless_raw() -> None:
    templated = parse_ollama({"prompt": "hi", "system": "be brief"}, chat=False).prompt
    assert templated == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert parse_ollama({"prompt": "<|im_start|>x", "raw": True}, chat=False).prompt == "<|im_start|>x"
    assert parse_ollama({}, chat=False).prompt is None  # a preload


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"options": {"top_p": 0}}, "options.top_p"),
        ({"options": {"seed": "x"}}, "options.seed"),
        ({"options": {"stop": [""]}}, "options.stop"),
        ({"options": []}, "options"),
        ({"format": 3}, "format"),
        ({"think": True}, "think"),
        ({"keep_alive": True}, "keep_alive"),
        ({"suffix": "x"}, "suffix"),
        ({"tools": [ADD], "format": "json"}, "response_format"),
    ],
)
def test_bad_fields_name_themselves(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_ollama(body, chat=True)
    assert e.value.extra["param"] == param


def test_tool_history_in_ollamas_shape() -> None:
    msgs = parse_ollama_messages(
        {
            "messages": [
                {"role": "user", "content": "2+3?"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2}}}]},
                {"role": "tool", "content": "5", "tool_name": "add"},
            ]
        }
    )
    assert msgs[1]["tool_calls"][0]["arguments"] == {"a": 2}
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
    with pytest.raises(InvalidRequest):  # a result with no call before it
        parse_ollama_messages({"messages": [{"role": "tool", "content": "5"}]})


def test_a_call_is_answered_with_arguments_as_an_object() -> None:
    gen = parse_ollama({"tools": [ADD], "stream": False}, chat=True).gen
    final: dict[str, Any] = {"message": {"role": "assistant", "content": ""}}
    _fill_final(final, '{"tool_calls": [{"name": "add", "arguments": {"a": 2}}]}', gen, chat=True)
    assert final["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2}}}],
    }
    text: dict[str, Any] = {"message": {"role": "assistant", "content": ""}}
    _fill_final(text, "Five.", gen, chat=True)
    assert text["message"] == {"role": "assistant", "content": "Five."}
