"""JSON Schema -> GBNF grammar for constrained decoding.

The conversion is llama-cpp-python's ``llama_grammar.json_schema_to_gbnf`` (its port of llama.cpp's
json-schema-to-grammar), loaded without the package's ``__init__`` (``llama_native.bindings``). That converter
silently ignores keywords it does not implement (``minimum``, ``uniqueItems``, ...): a reply would then "follow" a
schema it does not satisfy. So every keyword is checked first, and one that would not be enforced is refused by
name (``SchemaUnsupported``); annotations that constrain nothing (``title``, ``description``, ...) are fine.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "allOf", "pattern", "format", "$ref",
}  # fmt: skip
ANNOTATIONS = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$defs", "definitions", "strict",
}  # fmt: skip
TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
FORMATS = {"date", "time", "date-time", "uuid"}
MAX_SCHEMA_BYTES = 64 << 10
MAX_DEPTH = 24
MAX_REPEAT = 1024  # minItems/maxItems/minLength/maxLength: the grammar spells repetitions out
MAX_GRAMMAR_BYTES = 512 << 10


class SchemaUnsupported(ValueError):
    """The schema asks for something the grammar cannot enforce; ``path`` says where (JSON Pointer)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{message} (at {path or '/'})")
        self.path = path


def grammar_for(schema: Any) -> str:
    """The GBNF grammar whose sentences are exactly the JSON texts ``schema`` accepts (compact whitespace)."""
    if not isinstance(schema, dict):
        raise SchemaUnsupported("a JSON schema must be an object", "")
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaUnsupported(f"the schema is over {MAX_SCHEMA_BYTES} bytes", "")
    _check(schema, "", 0)
    try:
        grammar: str = _converter().json_schema_to_gbnf(text)
    except Exception as e:  # noqa: BLE001 - its own refusals are asserts and ValueErrors; any failure is a 400
        raise SchemaUnsupported(f"the schema cannot be turned into a grammar: {e}", "") from None
    grammar = _strict_strings(grammar)
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise SchemaUnsupported(f"the schema's grammar is over {MAX_GRAMMAR_BYTES} bytes", "")
    return grammar


# The converter's string character rule lets raw control characters (a newline, a tab) into strings, which JSON
# forbids (llama.cpp's C++ converter excludes them): replaced by the strict rule
LAX_CHAR = 'char ::= [^"\\\\] |'
STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _strict_strings(grammar: str) -> str:
    return "\n".join(
        STRICT_CHAR + line[len(LAX_CHAR) :] if line.startswith(LAX_CHAR) else line for line in grammar.split("\n")
    )


def _converter() -> Any:
    from runtimes.llama_native import bindings

    bindings()  # the llama_cpp namespace, without its numpy-loading __init__ when it has not run yet
    return importlib.import_module("llama_cpp.llama_grammar")


def _check(schema: Any, path: str, depth: int) -> None:
    if isinstance(schema, bool):
        if schema:
            return  # ``true``: anything
        raise SchemaUnsupported("'false' (no value allowed) cannot be generated", path)
    if not isinstance(schema, dict):
        raise SchemaUnsupported("a schema must be an object or a boolean", path)
    if depth > MAX_DEPTH:
        raise SchemaUnsupported(f"the schema nests deeper than {MAX_DEPTH} levels", path)
    for key in schema:
        if key not in ENFORCED and key not in ANNOTATIONS:
            raise SchemaUnsupported(f"'{key}' is not supported in structured output", f"{path}/{key}")
    _check_values(schema, path)
    _check_children(schema, path, depth)


def _check_children(schema: dict[str, Any], path: str, depth: int) -> None:
    for key in ("properties", "$defs", "definitions"):
        children = schema.get(key, {})
        if not isinstance(children, dict):
            raise SchemaUnsupported(f"'{key}' must be an object", f"{path}/{key}")
        for name, child in children.items():
            _check(child, f"{path}/{key}/{_escape(name)}", depth + 1)
    for key in ("items", "additionalProperties"):
        if key in schema and not isinstance(schema[key], bool):  # true: anything; false: none (no more items/keys)
            _check(schema[key], f"{path}/{key}", depth + 1)
    for key in ("prefixItems", "anyOf", "oneOf", "allOf"):
        if key in schema:
            alternatives = schema[key]
            if not isinstance(alternatives, list) or not alternatives:
                raise SchemaUnsupported(f"'{key}' must be a non-empty list", f"{path}/{key}")
            for i, child in enumerate(alternatives):
                _check(child, f"{path}/{key}/{i}", depth + 1)


def _check_values(schema: dict[str, Any], path: str) -> None:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in TYPES:
            raise SchemaUnsupported(f"'type' {k!r} is not a JSON Schema type", f"{path}/type")
    if "format" in schema and schema["format"] not in FORMATS:
        raise SchemaUnsupported(
            f"'format' {schema['format']!r} is not enforced (supported: {', '.join(sorted(FORMATS))})",
            f"{path}/format",
        )
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
        raise SchemaUnsupported("'$ref' must point inside the schema ('#/...')", f"{path}/$ref")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaUnsupported("'required' must be a list of property names", f"{path}/required")
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        value = schema.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT
        ):
            raise SchemaUnsupported(f"'{key}' must be an integer in [0, {MAX_REPEAT}]", f"{path}/{key}")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise SchemaUnsupported("'enum' must be a non-empty list", f"{path}/enum")
    if "pattern" in schema and not isinstance(schema["pattern"], str):
        raise SchemaUnsupported("'pattern' must be a string", f"{path}/pattern")


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
