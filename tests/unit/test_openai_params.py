"""Generation request validation: every field is applied or refused with a 400 naming it, never silently ignored."""

from __future__ import annotations

from typing import Any

import pytest

from tursi.core.errors import InvalidRequest
from tursi.worker.openai_params import parse_generation, parse_messages

HI = [{"role": "user", "content": "hi"}]
NUMBERS = ["temperature", "top_p", "presence_penalty", "frequency_penalty"]


@pytest.mark.parametrize("field", NUMBERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(field: str, value: float) -> None:
    """json.loads turns NaN / Infinity into floats that compare false with every bound."""
    with pytest.raises(InvalidRequest) as info:
        parse_generation({"messages": HI, field: value})
    assert info.value.extra["param"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"presence_penalty": "high"}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"frequency_penalty": True}, "frequency_penalty"),
        ({"top_k": 40}, "top_k"),  # not an OpenAI field: refused, not ignored
        ({"logprobs": 1}, "logprobs"),  # chat: true or false
        ({"cache_prompt": "no"}, "cache_prompt"),  # true or false only
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
        ({"tools": "all"}, "tools"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stream": True, "stream_options": {"other": 1}}, "stream_options"),
        ({"max_tokens": 5, "max_completion_tokens": 9}, "max_tokens"),
        ({"user": 7}, "user"),
        ({"prompt": "x"}, "prompt"),  # a completions field on the chat route
    ],
)
def test_fields_that_would_be_ignored_are_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_generation({"messages": HI, **body})
    assert info.value.extra["param"] == field


def test_penalties_reach_the_sampler() -> None:
    gen = parse_generation({"messages": HI, "presence_penalty": -1.5, "frequency_penalty": 2, "user": "u1"})
    assert (gen.sampling.presence_penalty, gen.sampling.frequency_penalty) == (-1.5, 2.0)
    plain = parse_generation({"prompt": "x", "echo": False, "best_of": 1, "max_tokens": 3}, chat=False)
    assert (plain.sampling.presence_penalty, plain.sampling.max_tokens) == (0.0, 3)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": None}], "messages[1].content"),
        ([{"role": "user", "content": "a", "tool_calls": [{"id": "x"}]}], "messages[0].tool_calls"),
        ([{"role": "user", "content": "a", "weight": 2}], "messages[0].weight"),
        ([{"role": "user", "content": "a", "name": 5}], "messages[0].name"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
    ],
)
def test_message_shape_errors_name_the_field(messages: list[Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages({"messages": messages})
    assert info.value.extra["param"] == field


def test_message_name_is_kept_for_the_template() -> None:
    assert parse_messages({"messages": [{"role": "user", "content": "a", "name": "ann"}]}) == [
        {"role": "user", "content": "a", "name": "ann"}
    ]


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ("[" * 100_000 + "]" * 100_000, "more than 100000 JSON values"),  # issue 28 (low): a RecursionError, a 500
        ("[" * 5_000 + "]" * 5_000, "nests deeper"),
        ("[" * 40 + "]" * 40, "nests deeper"),
        ("{bad", "not valid JSON"),
        ('{"x": NaN}', "finite"),
    ],
)
def test_tool_call_arguments_get_the_bodys_json_limits(arguments: str, why: str) -> None:
    """An assistant message's tool call carries its arguments as a JSON text: parsed with the body's own limits
    (OpenAI's and Ollama's shapes), a 400 naming the field."""
    from tursi.worker.ollama_params import parse_ollama_messages

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    with pytest.raises(InvalidRequest, match=why) as info:
        parse_messages({"messages": messages})
    assert info.value.extra["param"] == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(InvalidRequest, match=why) as info:
        parse_ollama_messages({"messages": messages})
    assert info.value.extra["param"] == "messages[1].tool_calls[0].function.arguments"
