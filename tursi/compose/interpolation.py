"""``${VAR}`` in a Compose file's values, as Compose substitutes them, with one difference: a variable that is
unset and has no default is an error naming the variable and the key path (Compose warns and substitutes "").

Forms: ``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or empty: default), ``${VAR-default}`` (unset: default),
``${VAR:?message}`` / ``${VAR?message}`` (unset or empty / unset: an error with the message); ``$$`` is a literal
``$``. A default is taken as written (no nested substitution). Keys are never interpolated, only values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tursi.core.errors import InvalidSpec

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    rf"\$(?:(?P<escaped>\$)|(?P<plain>{_NAME})|\{{(?P<braced>{_NAME})(?P<op>:?[-?])?(?P<arg>[^}}]*)\}}|)"
)


MAX_NODES = 100_000  # YAML aliases can make a small file a huge tree ("billion laughs"): walk this many at most


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """``value`` (YAML as loaded) with every string substituted; ``path`` names it in errors (models.chat)."""
    return _Walk(env).value(value, path)


class _Walk:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.left = MAX_NODES

    def value(self, value: Any, path: str) -> Any:
        self.left -= 1
        if self.left < 0:
            raise InvalidSpec(f"the file expands to over {MAX_NODES} values (YAML aliases?)", param=path)
        if isinstance(value, str):
            return substitute(value, self.env, path)
        if isinstance(value, dict):
            return {k: self.value(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value


def substitute(text: str, env: Mapping[str, str], path: str) -> str:
    """One string with its ``$`` forms replaced by values from ``env``."""

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("plain") or m.group("braced")
        if name is None or (m.group("braced") and m.group("op") is None and m.group("arg")):
            raise InvalidSpec(
                f"{path}: '$' must start $VAR, ${{VAR}}, ${{VAR:-default}} or be written $$ (in {text!r})",
                param=path,
            )
        return _value(name, m.group("op"), m.group("arg"), env, path)

    return _TOKEN.sub(replace, text)


def _value(name: str, op: str | None, arg: str, env: Mapping[str, str], path: str) -> str:
    value = env.get(name)
    missing = value is None or (op is not None and op.startswith(":") and value == "")
    if op is None or not missing:
        if value is None:
            raise InvalidSpec(f"{path}: variable {name} is not set (give it a default: ${{{name}:-value}})", param=path)
        return value
    if op.endswith("-"):
        return arg
    raise InvalidSpec(f"{path}: variable {name} is required: {arg or 'it is not set'}", param=path)
