"""Finding and reading a Compose file: the default names, a size cap, YAML read as Compose reads it.

Compose parses YAML 1.2, where only true/false are booleans: ``restart: no`` is the string "no", not False as
PyYAML's YAML 1.1 resolver would make it. Duplicate keys are refused (PyYAML silently keeps the last one); merge
keys (``<<: *defaults``, common in Compose files) merge, the mapping's own keys winning, as Compose does. A key that
is not a scalar (a list) and nesting deeper than MAX_DEPTH are refused as what they are, not as an internal error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tursi.core.errors import InvalidSpec

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
MAX_BYTES = 1 << 20  # a models file is a few KiB; this only stops a mistaken path from being read whole
MAX_DEPTH = 64
MAX_NODES = 100_000  # values in the file with its aliases expanded
MERGE = "tag:yaml.org,2002:merge"


class ComposeLoader(yaml.SafeLoader):
    """safe_load's loader with YAML 1.2's booleans and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue  # merged keys may be overridden by the mapping's own: not duplicates
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise InvalidSpec(f"a key at line {line} is a {key_node.id}: keys are names (strings)")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise InvalidSpec(f"duplicate key {key!r} at line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ComposeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ComposeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def find_file(given: str | None, cwd: Path) -> Path:
    """``-f FILE`` (relative to ``cwd``), else the first default name present in ``cwd``."""
    if given is not None:
        path = cwd / given
        if not path.is_file():
            raise InvalidSpec(f"compose file {given!r} not found", param="file")
        return path.absolute()
    for name in DEFAULT_FILES:
        if (cwd / name).is_file():
            return (cwd / name).absolute()
    raise InvalidSpec(
        f"no compose file in {cwd}: looked for {', '.join(DEFAULT_FILES)}", hint="give one with -f FILE", param="file"
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping; a file too large, not UTF-8, not YAML or not a mapping is an InvalidSpec."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise InvalidSpec(f"cannot read {path}: {e.strerror}", param="file") from None
    if len(raw) > MAX_BYTES:
        raise InvalidSpec(f"{path} is over {MAX_BYTES // 1024} KiB: not a compose file?", param="file")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise InvalidSpec(f"{path} is not UTF-8 text", param="file") from None
    except InvalidSpec as e:  # a duplicate key, a key that is not a name
        raise InvalidSpec(f"{path}: {e.detail}", param="file") from None
    except RecursionError:
        raise InvalidSpec(f"{path} nests deeper than {MAX_DEPTH} levels", param="file") from None
    except yaml.YAMLError as e:
        raise InvalidSpec(f"{path} is not valid YAML: {_one_line(e)}", param="file") from None
    if not isinstance(data, dict):
        raise InvalidSpec(f"{path}: the top level must be a mapping (name:, models:, ...)", param="file")
    _check_size(path, data)
    return data


def _check_size(path: Path, data: dict[str, Any]) -> None:
    """At most MAX_DEPTH levels, looked for in the first MAX_NODES values (iteratively, as the aliases expand: a
    file of nested aliases would expand to billions; interpolation refuses those)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return  # an alias bomb: interpolation refuses it, saying so
        if depth > MAX_DEPTH:
            raise InvalidSpec(f"{path} nests deeper than {MAX_DEPTH} levels", param="file")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def _one_line(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(e, 'problem', None) or e}{where}"
