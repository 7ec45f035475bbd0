"""JSON Schema -> GBNF grammar for constrained decoding.

The conversion is llama-cpp-python's ``llama_grammar.json_schema_to_gbnf`` (its port of llama.cpp's
json-schema-to-grammar), loaded without the package's ``__init__`` (``llama_native.bindings``). That converter
silently ignores keywords it does not implement (``minimum``, ``uniqueItems``, ...): a reply would then "follow" a
schema it does not satisfy. So every keyword is checked first, and one that would not be enforced is refused by
name (``SchemaUnsupported``); annotations that constrain nothing (``title``, ``description``, ...) are fine.

Two parts of that converter are replaced here, because their grammars were wrong or refused by llama.cpp: a
``pattern`` is written by runtimes/json_schema_pattern.py (the converter let ``^a|b$`` produce an unterminated
string and wrote ``\\d`` as an escape GBNF does not have), and repetitions (``minItems``/``maxItems``,
``minLength``/``maxLength``) use GBNF's own ``{m,n}``, as llama.cpp's C++ converter does, instead of ``(x (x
...)?)?`` nested as deep as the maximum (over a few hundred, llama.cpp refused the grammar).
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
    """The GBNF grammar whose sentences are JSON texts ``schema`` accepts (compact whitespace)."""
    if not isinstance(schema, dict):
        raise SchemaUnsupported("a JSON schema must be an object", "")
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaUnsupported(f"the schema is over {MAX_SCHEMA_BYTES} bytes", "")
    _check(schema, "", 0)
    try:
        grammar: str = _convert(json.loads(text))
    except SchemaUnsupported:
        raise
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
    module = importlib.import_module("llama_cpp.llama_grammar")
    # its methods look the function up in the module at each call: ours writes GBNF's {m,n}
    module._build_repetition = _build_repetition  # type: ignore[attr-defined]
    return module


def _convert(schema: dict[str, Any]) -> str:
    """llama-cpp-python's ``json_schema_to_gbnf``, with patterns written by runtimes.json_schema_pattern."""
    from runtimes.json_schema_pattern import PatternUnsupported, pattern_gbnf

    module = _converter()

    class Converter(module.SchemaConverter):  # type: ignore[name-defined]
        def _visit_pattern(self, pattern: str, name: str) -> str:
            try:
                body = pattern_gbnf(pattern)  # checked with its path by _check_pattern already
            except PatternUnsupported as e:
                raise SchemaUnsupported(f"'pattern' {pattern[:80]!r}: {e}", "") from None
            return str(self._add_rule(name, '"\\"" ' + body + ' "\\"" space'))

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    resolved = converter.resolve_refs(schema, "stdin")
    converter.visit(resolved, "")
    return str(converter.format_grammar())


def _build_repetition(
    item_rule: str,
    min_items: int,
    max_items: int | None,
    separator_rule: str | None = None,
    item_rule_is_literal: bool = False,
) -> str:
    """``item_rule`` from ``min_items`` to ``max_items`` (None: no limit) times, separated by ``separator_rule``,
    in GBNF's repetition syntax (llama.cpp expands ``{m,n}`` into a chain of rules, not a nesting)."""
    if item_rule_is_literal:
        item_rule = f"({item_rule})"
    if max_items == 0:
        return ""
    if min_items == 0 and max_items == 1:
        return f"{item_rule}?"
    if not separator_rule:
        if min_items == 1 and max_items is None:
            return f"{item_rule}+"
        if min_items == 0 and max_items is None:
            return f"{item_rule}*"
        return f"{item_rule}{{{min_items},{'' if max_items is None else max_items}}}"
    rest = _build_repetition(
        f"({separator_rule} {item_rule})", max(0, min_items - 1), None if max_items is None else max_items - 1
    )
    result = f"{item_rule} {rest}".rstrip()
    return f"({result})?" if min_items == 0 else result


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
    if "pattern" in schema:
        _check_pattern(schema["pattern"], f"{path}/pattern")
        # the converter writes a pattern's rule alone: these would be silently dropped beside it
        for key in ("minLength", "maxLength", "format", "enum", "const"):
            if key in schema:
                raise SchemaUnsupported(f"'{key}' is not enforced together with 'pattern'", f"{path}/{key}")


def _check_pattern(pattern: Any, path: str) -> None:
    from runtimes.json_schema_pattern import PatternUnsupported, pattern_gbnf

    if not isinstance(pattern, str):
        raise SchemaUnsupported("'pattern' must be a string", path)
    try:
        pattern_gbnf(pattern)
    except PatternUnsupported as e:
        raise SchemaUnsupported(f"'pattern' {pattern[:80]!r}: {e}", path) from None


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
