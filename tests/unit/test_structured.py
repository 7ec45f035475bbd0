"""Structured output and tool declarations: which schemas become grammars, which are refused and by what name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtimes.json_schema_grammar import SchemaUnsupported, grammar_for
from tursi.core.errors import InvalidRequest
from tursi.worker.openai_params import parse_generation, parse_messages
from tursi.worker.structured import SchemaRejected, prompt_messages

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


def test_a_schema_becomes_a_grammar_with_its_properties() -> None:
    g = grammar_for({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]})
    assert "root ::=" in g
    assert '\\"yes\\"' in g


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "integer", "minimum": 0}, "/minimum"),
        ({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 2}}}, "/properties/n/multipleOf"),
        ({"type": "array", "uniqueItems": True}, "/uniqueItems"),
        ({"type": "string", "format": "email"}, "/format"),
        ({"type": "string", "maxLength": 10**6}, "/maxLength"),
        ({"type": "thing"}, "/type"),
        ({"$ref": "https://example.com/s.json"}, "/$ref"),
        ({"anyOf": []}, "/anyOf"),
        ({"not": {"type": "string"}}, "/not"),
        (False, ""),
    ],
)
def test_a_keyword_the_grammar_would_ignore_is_refused_by_name(schema: Any, where: str) -> None:
    with pytest.raises(SchemaUnsupported) as e:
        grammar_for({"type": "object", "properties": {"x": schema}} if where == "" else schema)
    assert e.value.path.endswith(where)


def test_a_pattern_without_anchors_may_have_text_around_its_match() -> None:
    """JSON Schema's patterns are not anchored: "[a-z]+" accepts any string holding a letter."""
    g = grammar_for({"type": "string", "pattern": "[a-z]+"})
    (root,) = [line for line in g.split("\n") if line.startswith("root ::=")]
    assert "([a-z])+" in root
    assert root.count("]*") == 2  # anything before, anything after


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^(?=a)b$", "lookaround"),
        ("^(a)\\1$", "backreferences"),
        ("^\\bx$", "'\\b' is not supported"),
        ("^a^b$", "only at the pattern's start"),
        ("^[b-a]$", "wrong way round"),
        ("^a{2000}$", "a repetition over 1024"),
        ("^(a$", "unbalanced '('"),
        ("^\\p{L}$", "'\\p' is not supported"),
    ],
)
def test_a_pattern_the_grammar_cannot_express_is_refused_by_name(pattern: str, why: str) -> None:
    with pytest.raises(SchemaUnsupported) as e:
        grammar_for({"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}})
    assert why in str(e.value)
    assert e.value.path == "/properties/code/pattern"


@pytest.mark.parametrize("beside", ["maxLength", "minLength", "format", "enum"])
def test_what_the_converter_drops_beside_a_pattern_is_refused(beside: str) -> None:
    value = {"maxLength": 3, "minLength": 1, "format": "date", "enum": ["a"]}[beside]
    with pytest.raises(SchemaUnsupported, match="not enforced together with 'pattern'") as e:
        grammar_for({"type": "string", "pattern": "^a+$", beside: value})
    assert e.value.path == f"/{beside}"


def test_deep_or_huge_schemas_are_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    with pytest.raises(SchemaUnsupported, match="deeper"):
        grammar_for(deep)
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(900)}}
    with pytest.raises(SchemaUnsupported, match="bytes"):
        grammar_for(huge)


def test_response_format_json_schema_sets_the_grammar() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True}}
    gen = parse_generation({"messages": [], "response_format": fmt})
    assert gen.sampling.grammar is not None
    assert parse_generation({"response_format": {"type": "text"}}).sampling.grammar is None
    assert parse_generation({"response_format": {"type": "json_object"}}).sampling.grammar is not None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": "json"}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"minimum": 1}}}},
            "response_format.json_schema.schema.minimum",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]},
            "tools[0].function.parameters.not",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ],
)
def test_bad_formats_and_tools_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_generation(body)
    assert e.value.extra["param"] == param
    if "schema" in param or param.endswith((".parameters.not",)):
        assert isinstance(e.value, SchemaRejected)
        assert e.value.code == "unsupported_schema"


def test_tool_choice_none_means_no_tools_and_required_has_no_text_branch() -> None:
    assert parse_generation({"tools": [WEATHER], "tool_choice": "none"}).tools is None
    auto = parse_generation({"tools": [WEATHER]}).tools
    required = parse_generation({"tools": [WEATHER], "tool_choice": "required"}).tools
    assert auto is not None
    assert required is not None
    assert "root ::= call | text" in auto.grammar
    assert "text ::=" not in required.grammar
    assert required.must_call
    assert required.max_calls == 1  # llama-server's default: one call a reply
    parallel = parse_generation({"tools": [WEATHER], "parallel_tool_calls": True}).tools
    assert parallel is not None
    assert parallel.max_calls > 1


def test_a_call_reply_becomes_openai_tool_calls() -> None:
    tools = parse_generation({"tools": [WEATHER], "tool_choice": "required"}).tools
    assert tools is not None
    calls = tools.as_call('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}')
    assert calls is not None
    assert calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert tools.as_call("It is sunny.") is None
    assert tools.as_call('{"tool_calls": [{"name": "get_wea') is None  # cut by max_tokens


def conversation(tool_call_id: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    return {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": tool_call_id, "content": "18 C, sunny"},
        ]
    }


def test_a_tool_result_must_answer_an_earlier_call() -> None:
    msgs = parse_messages(conversation("call_1"))
    assert msgs[1]["tool_calls"][0]["arguments"] == {"city": "Paris"}
    with pytest.raises(InvalidRequest) as e:
        parse_messages(conversation("call_2"))
    assert e.value.extra["param"] == "messages[2].tool_call_id"
    bad = conversation("call_1")
    bad["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(InvalidRequest) as e:
        parse_messages(bad)
    assert e.value.extra["param"] == "messages[1].tool_calls[0].function.arguments"
    user_calls = conversation("call_1")
    user_calls["messages"][0]["tool_calls"] = user_calls["messages"][1]["tool_calls"]
    with pytest.raises(InvalidRequest, match="only allowed in assistant"):
        parse_messages(user_calls)


def test_the_prompt_shows_the_functions_and_earlier_calls_as_json() -> None:
    tools = parse_generation({"tools": [WEATHER]}).tools
    shown = prompt_messages(parse_messages(conversation("call_1")), tools)
    assert shown[0]["role"] == "system"
    assert "get_weather" in shown[0]["content"]
    assert json.loads(shown[2]["content"]) == {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
    assert shown[3] == {"role": "tool", "content": "18 C, sunny"}


def test_strings_in_the_grammar_exclude_raw_control_characters() -> None:
    """JSON strings cannot hold a raw newline or tab: the converter's lax character rule is replaced."""
    g = grammar_for({"type": "object", "properties": {"a": {"type": "string"}}})
    char = next(line for line in g.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char


DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("template", "fmt"),
    [("hermes_tools.jinja", "hermes"), ("llama3_tools.jinja", "llama3"), ("mistral_tools.jinja", "mistral")],
)
def test_a_template_with_its_own_tool_format_is_recognised_and_parsed(template: str, fmt: str) -> None:
    from runtimes.chat_template import CHATML, ChatTemplate

    assert ChatTemplate.load(CHATML, "", "").tool_format is None
    tmpl = ChatTemplate.load((DATA / template).read_text(encoding="utf-8"), "", "<|im_end|>")
    assert tmpl.tool_format == fmt
    tools = parse_generation({"tools": [WEATHER], "tool_choice": "required"}, tool_format=fmt).tools
    assert tools is not None
    assert tools.fmt == fmt
    assert tools.system_text == ""  # the template lists the tools
    args = {"city": "Oslo"}
    reply = {
        "hermes": f'<tool_call>\n{{"name": "get_weather", "arguments": {json.dumps(args)}}}\n</tool_call>',
        "llama3": f'{{"name": "get_weather", "parameters": {json.dumps(args)}}}',
        "mistral": f'[TOOL_CALLS] [{{"name": "get_weather", "arguments": {json.dumps(args)}}}]',
    }[fmt]
    calls = tools.as_call(reply)
    assert calls is not None
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == args
    rendered = tmpl.render([{"role": "user", "content": "hi"}], tools=list(tools.template_tools))
    assert "get_weather" in rendered


def test_mistral_calls_have_9_character_ids_and_the_control_token_may_be_unseen() -> None:
    """[TOOL_CALLS] is a control token in Mistral's vocabularies: the grammar matches its text, the reply does not
    show it; either way the list is the call. Ids are what Mistral's templates accept, and any id a client brings is
    shown to the template as the same 9 characters in the call and in its result."""
    from tursi.worker.structured import prompt_messages

    tools = parse_generation({"tools": [WEATHER]}, tool_format="mistral").tools
    assert tools is not None
    assert '"[TOOL_CALLS]" " "? "["' in tools.grammar
    assert "root ::= calls | text" in tools.grammar
    for reply in (
        '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
        ' [{"name": "get_weather", "arguments": {}}]',
    ):
        calls = tools.as_call(reply)
        assert calls is not None
        assert len(calls[0]["id"]) == 9
        assert calls[0]["id"].isalnum()
    assert tools.as_call("It is sunny.") is None
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_abc", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "21"},
    ]
    shown = prompt_messages(history, None, "mistral")  # tool_choice none: the template still renders the history
    call_id = shown[1]["tool_calls"][0]["id"]
    assert len(call_id) == 9
    assert call_id.isalnum()
    assert shown[2]["tool_call_id"] == call_id
