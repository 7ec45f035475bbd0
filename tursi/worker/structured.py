"""Structured output and tool calls for OpenAI-shaped requests, both enforced while sampling by a grammar.

``response_format`` ``json_object`` / ``json_schema`` becomes a GBNF grammar (``runtimes.json_schema_grammar``): the
reply is JSON that validates, every time, unless it is cut by ``max_tokens`` (``finish_reason: "length"``).

Tools: the model is told the functions in a system message and answers either in text or with one JSON object
``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` whose names are the declared functions and whose arguments
follow each function's ``parameters`` schema; the grammar makes anything else impossible. ``tool_choice`` picks the
grammar: ``none`` (no tools), ``auto`` (text or a call; text cannot start with ``{``), ``required`` (a call), or a
named function (a call to it). One call per reply unless ``parallel_tool_calls`` is true (up to
``MAX_PARALLEL_CALLS``): llama-server's default, not OpenAI's, because small models given room repeat the same call
until the room is gone. Earlier calls in the conversation are shown to the model in the same JSON form.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from runtimes.json_schema_grammar import SchemaUnsupported, grammar_for
from tursi.core.errors import InvalidRequest

MAX_TOOLS = 64
MAX_PARALLEL_CALLS = 8
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Free text in `auto` mode: anything that does not open with "{" (that opens a call)
TEXT_RULE = "text ::= [^{ \\t\\n] [^\\x00]*"
HERMES_TEXT_RULE = "text ::= [^< \\t\\n] [^\\x00]*"  # text, in the Hermes format, cannot open with "<"
MISTRAL_TEXT_RULE = "text ::= [^[ \\t\\n] [^\\x00]*"  # and in Mistral's, with "["
MISTRAL_OPEN = "[TOOL_CALLS]"  # a control token in Mistral's vocabularies: the grammar sees its text, the reply not
HERMES_BLOCK = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


class SchemaRejected(InvalidRequest):
    code = "unsupported_schema"
    title = "Schema not supported"


def _bad(field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' {why}", param=field)


def _grammar(schema: Any, field: str) -> str:
    try:
        return grammar_for(schema)
    except SchemaUnsupported as e:
        raise SchemaRejected(f"'{field}': {e}", param=field + e.path.replace("/", ".")) from None


def response_grammar(body: dict[str, Any]) -> str | None:
    """The grammar ``response_format`` asks for, or None for plain text."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _bad("response_format", "must be {'type': 'text' | 'json_object' | 'json_schema', ...}")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return _grammar({"type": "object"}, "response_format")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
        raise _bad("response_format.json_schema", "must be an object with 'name' and 'schema'")
    schema = spec.get("schema", {"type": "object"})
    return _grammar(schema, "response_format.json_schema.schema")


@dataclass(frozen=True)
class Tools:
    """What a request's ``tools`` and ``tool_choice`` mean for the prompt and the grammar. ``fmt`` is the model's
    own tool format when its chat template has one (``hermes``: the template lists the tools and the model
    answers in ``<tool_call>`` blocks; ``llama3``: one ``{"name", "parameters"}`` object; ``mistral``:
    ``[TOOL_CALLS]`` and a JSON list of calls with 9-character ids), else ``generic`` (Tursi's system message and
    JSON object)."""

    names: tuple[str, ...]
    system_text: str
    grammar: str
    must_call: bool
    max_calls: int
    fmt: str = "generic"
    template_tools: tuple[dict[str, Any], ...] = ()

    def opens_call(self, text: str) -> bool:
        """Whether a reply that starts with ``text`` is a call (the grammar lets only a call open this way)."""
        return text.startswith({"hermes": "<", "mistral": "["}.get(self.fmt, "{"))

    def as_call(self, text: str) -> list[dict[str, Any]] | None:
        """The reply as OpenAI ``tool_calls``, or None when it is text (``auto``)."""
        if not self.opens_call(text.lstrip()):
            return None
        try:
            if self.fmt == "hermes":
                calls = [json.loads(block) for block in HERMES_BLOCK.findall(text)]
                if not calls:
                    return None
            elif self.fmt == "llama3":
                one = json.loads(text)
                calls = [{"name": one["name"], "arguments": one["parameters"]}]
            elif self.fmt == "mistral":
                calls = json.loads(text.lstrip().removeprefix(MISTRAL_OPEN))
            else:
                calls = json.loads(text)["tool_calls"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return None  # cut by max_tokens: not a call (finish_reason says "length")
        return [
            {
                "id": uuid.uuid4().hex[:9] if self.fmt == "mistral" else "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)},
            }
            for c in calls
        ]


def parse_tools(body: dict[str, Any], fmt: str | None = None) -> Tools | None:
    """None when the request declares no tools or ``tool_choice`` is ``none``. ``fmt``: the model's own tool
    format (``ChatTemplate.tool_format``), None for Tursi's generic one."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools in (None, []):
        if choice not in (None, "none", "auto"):
            raise _bad("tool_choice", "needs 'tools'")
        return None
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise _bad("tools", f"must be a list of at most {MAX_TOOLS} functions")
    functions = [_function(t, f"tools[{i}]") for i, t in enumerate(tools)]
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise _bad("tools", "declares a function name twice")
    parallel = body.get("parallel_tool_calls", False)  # llama-server's default: small models repeat a call
    if not isinstance(parallel, bool):
        raise _bad("parallel_tool_calls", "must be true or false")
    if choice == "none":
        return None
    wanted, must = _choice(choice, functions)
    max_calls = MAX_PARALLEL_CALLS if parallel else 1
    if fmt == "hermes":
        return _hermes(functions, wanted, must, max_calls)
    if fmt == "llama3":
        return _llama3(functions, wanted, must)
    if fmt == "mistral":
        return _mistral(functions, wanted, must, max_calls)
    call = {
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_calls,
                "items": {"anyOf": [_call_schema(f) for f in wanted]},
            }
        },
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    grammar = _grammar(call, "tools")
    if not must:
        grammar = grammar.replace("root ::=", "call ::=", 1) + f"\n{TEXT_RULE}\nroot ::= call | text\n"
    return Tools(tuple(names), _system_text(functions, wanted, must), grammar, must, max_calls)


def _hermes(functions: list[dict[str, Any]], wanted: list[dict[str, Any]], must: bool, max_calls: int) -> Tools:
    """The template lists the tools; the reply is ``<tool_call>\n{"name", "arguments"}\n</tool_call>`` blocks."""
    one = _grammar({"anyOf": [_call_schema(f) for f in wanted]}, "tools").replace("root ::=", "call ::=", 1)
    block = 'block ::= "<tool_call>\\n" call "\\n</tool_call>"'
    more = f'("\\n" block){{0,{max_calls - 1}}}' if max_calls > 1 else ""
    grammar = f"{one}\n{block}\ncalls ::= block {more}\n"
    grammar += "root ::= calls\n" if must else f"{HERMES_TEXT_RULE}\nroot ::= calls | text\n"
    listed = tuple({"type": "function", "function": f} for f in functions)
    return Tools(tuple(f["name"] for f in functions), "", grammar, must, max_calls, "hermes", listed)


def _mistral(functions: list[dict[str, Any]], wanted: list[dict[str, Any]], must: bool, max_calls: int) -> Tools:
    """The template lists the tools; the reply is ``[TOOL_CALLS]`` then a JSON list of ``{"name", "arguments"}``."""
    one = _grammar({"anyOf": [_call_schema(f) for f in wanted]}, "tools").replace("root ::=", "call ::=", 1)
    more = f'("," " "? call){{0,{max_calls - 1}}}' if max_calls > 1 else ""
    grammar = f'{one}\ncalls ::= "{MISTRAL_OPEN}" " "? "[" call {more} "]"\n'
    grammar += "root ::= calls\n" if must else f"{MISTRAL_TEXT_RULE}\nroot ::= calls | text\n"
    listed = tuple({"type": "function", "function": f} for f in functions)
    return Tools(tuple(f["name"] for f in functions), "", grammar, must, max_calls, "mistral", listed)


def _choice(choice: Any, functions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """(the functions the reply may call, whether it must call one) for ``tool_choice``."""
    if choice in (None, "auto", "required"):
        return functions, choice == "required"
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in [f["name"] for f in functions]:
            raise _bad("tool_choice.function.name", "is not one of the declared tools")
        return [f for f in functions if f["name"] == name], True
    raise _bad("tool_choice", "must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name'}}")


def _llama3(functions: list[dict[str, Any]], wanted: list[dict[str, Any]], must: bool) -> Tools:
    """The template lists the tools; the reply is one ``{"name", "parameters"}`` object (Llama 3.1's templates
    take one call at a time)."""
    schemas = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "parameters": f["parameters"]},
            "required": ["name", "parameters"],
            "additionalProperties": False,
        }
        for f in wanted
    ]
    grammar = _grammar({"anyOf": schemas}, "tools")
    if not must:
        grammar = grammar.replace("root ::=", "call ::=", 1) + f"\n{TEXT_RULE}\nroot ::= call | text\n"
    listed = tuple({"type": "function", "function": f} for f in functions)
    return Tools(tuple(f["name"] for f in functions), "", grammar, must, 1, "llama3", listed)


def _function(tool: Any, field: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise _bad(field, "must be {'type': 'function', 'function': {...}}")
    fn = tool["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise _bad(f"{field}.function.name", "must be 1-64 characters of a-z, A-Z, 0-9, _ and -")
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise _bad(f"{field}.function.description", "must be a string")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise _bad(f"{field}.function.parameters", "must be a JSON schema of an object")
    _grammar(params, f"{field}.function.parameters")  # refused here, named by the tool it belongs to
    return {"name": name, "description": description, "parameters": params}


def _call_schema(fn: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": fn["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _system_text(functions: list[dict[str, Any]], wanted: list[dict[str, Any]], must: bool) -> str:
    listing = json.dumps(
        [{"name": f["name"], "description": f["description"], "parameters": f["parameters"]} for f in functions],
        ensure_ascii=False,
    )
    how = 'To call functions, reply with only {"tool_calls": [{"name": ..., "arguments": {...}}]}.'
    if must and len(wanted) == 1:
        when = f"Call {wanted[0]['name']} now."
    elif must:
        when = "Call one or more of them now."
    else:
        when = "Call them when they help; otherwise answer in plain text."
    return f"You can call these functions: {listing}\n{how} {when}"


def check_tool_messages(messages: list[dict[str, Any]]) -> None:
    """Each ``tool`` message answers a call an earlier assistant message made (by ``tool_call_id``)."""
    made: set[str] = set()
    for i, msg in enumerate(messages):
        for call in msg.get("tool_calls") or []:
            made.add(call["id"])
        if msg["role"] == "tool":
            ref = msg.get("tool_call_id")
            if ref is None:
                raise _bad(f"messages[{i}].tool_call_id", "is required in a tool message")
            if ref not in made:
                raise _bad(f"messages[{i}].tool_call_id", "matches no tool call of an earlier assistant message")


def prompt_messages(
    messages: list[dict[str, Any]], tools: Tools | None, fmt: str | None = None
) -> list[dict[str, Any]]:
    """What the chat template renders. ``fmt``: the template's own tool format; then the template renders tools,
    earlier calls and results (with tools or without: ``tool_choice: none`` still shows the history). Else earlier
    calls are written as the JSON the model would have produced, results as ``tool`` turns, and the functions are
    described in the system message."""
    if fmt is not None or (tools is not None and tools.fmt != "generic"):
        return [_template_message(m) for m in messages]
    out = []
    for msg in messages:
        calls = msg.get("tool_calls")
        if calls:
            shown = {"tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in calls]}
            text = (msg.get("content") or "") + json.dumps(shown, ensure_ascii=False)
            out.append({"role": msg["role"], "content": text})
        else:
            out.append({k: v for k, v in msg.items() if k not in ("tool_calls", "tool_call_id")})
    if tools is not None:
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + tools.system_text}
        else:
            out.insert(0, {"role": "system", "content": tools.system_text})
    return out


def _template_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates with tool support read it: calls in OpenAI's shape, arguments as objects, ids
    as 9 letters and digits (Mistral's templates refuse any other; a client may bring ids from another server)."""
    out = {k: v for k, v in msg.items() if k not in ("tool_calls", "tool_call_id")}
    if msg.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": _template_id(c["id"]),
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in msg["tool_calls"]
        ]
    if msg.get("tool_call_id") is not None:
        out["tool_call_id"] = _template_id(msg["tool_call_id"])
    return out


def _template_id(call_id: str) -> str:
    """The same 9 letters and digits for the same call id, wherever it appears in a conversation."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]
