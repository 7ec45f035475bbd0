"""A Compose file as a project: its name and its model entries, checked; the normalized file `config` prints.

The project's name is ``-p``, else the file's ``name:``, else its folder's name, normalized as Compose does
(lower case; only a-z, 0-9, ``-`` and ``_``; starting with a letter or digit). Top-level keys of Compose that
Tursi does not run (``services:``, ``networks:``...) are accepted with a warning, so an existing file works;
``x-*`` extensions are ignored; anything else is an error listing what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tursi.compose.entry import ComposeModel, parse_model
from tursi.compose.interpolation import interpolate, substitute
from tursi.compose.source import read_yaml
from tursi.core.errors import InvalidSpec

PROJECT_LABEL = "com.tursi.compose.project"
HASH_LABEL = "com.tursi.compose.config-hash"
IGNORED_TOP_LEVEL = ("version", "services", "networks", "volumes", "configs", "secrets", "include")
TOP_LEVEL = ("name", "models", *IGNORED_TOP_LEVEL)
_PROJECT_RULE = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ComposeProject:
    name: str
    models: tuple[ComposeModel, ...]
    warnings: tuple[str, ...] = ()

    def model(self, name: str) -> ComposeModel | None:
        return next((m for m in self.models if m.name == name), None)

    def normalized(self) -> dict[str, Any]:
        """The file as Tursi reads it: every value interpolated, checked and in its canonical form; runtime
        flags folded into the options they set; API keys only as where they come from."""
        return {"name": self.name, "models": {m.name: m.normalized() for m in self.models}}


def request_body(model: ComposeModel, project: str) -> dict[str, Any]:
    """What `up` sends tursid for ``model``: its options, its name, the API key, and the labels that say which
    project it belongs to and which configuration it runs (what the next `up` compares)."""
    body = dict(model.options)
    body["name"] = model.name
    body["labels"] = {**(model.options.get("labels") or {}), PROJECT_LABEL: project, HASH_LABEL: model.config_hash}
    if model.api_key is not None:
        body["api_key"] = model.api_key
    return body


def normalize_project_name(raw: str) -> str:
    """A project name as Compose normalizes it: ``My App`` -> ``myapp``."""
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-")
    if not _PROJECT_RULE.fullmatch(name):
        raise InvalidSpec(
            f"project name {raw!r} has no letter or digit left once normalized: give one with -p NAME or name:",
            param="name",
        )
    return name


def load_project(path: Path, env: Mapping[str, str], given_name: str | None = None) -> ComposeProject:
    """Read, interpolate and check the file at ``path``; ``given_name`` is ``-p``."""
    data = read_yaml(path)
    warnings = _check_top_level(data)
    data = interpolate({k: v for k, v in data.items() if k in ("name", "models")}, env)
    models = data.get("models")
    if models is None:
        raise InvalidSpec(f"{path}: no models: section, so nothing for Tursi to deploy", param="models")
    if not isinstance(models, dict):
        raise InvalidSpec("models must be a mapping of name -> {model: ..., context_size: ..., x-tursi: ...}")
    parsed = tuple(parse_model(key, entry, path.parent, env) for key, entry in models.items())
    return ComposeProject(_name(data, path, given_name), parsed, warnings)


def project_name(path: Path, env: Mapping[str, str], given_name: str | None = None) -> str:
    """Only the project's name (what `down`, `ps` and `logs` need): the models need not be valid, nor their
    API keys present."""
    if given_name is not None:
        return normalize_project_name(given_name)
    data = read_yaml(path)
    raw = data.get("name")
    return _name({"name": substitute(raw, env, "name") if isinstance(raw, str) else raw}, path, None)


def _name(data: Mapping[str, Any], path: Path, given_name: str | None) -> str:
    if given_name is not None:
        return normalize_project_name(given_name)
    raw = data.get("name")
    if raw is None:
        return normalize_project_name(path.parent.name)
    if not isinstance(raw, str):
        raise InvalidSpec("name must be text: the project's name", param="name")
    return normalize_project_name(raw)


def _check_top_level(data: Mapping[Any, Any]) -> tuple[str, ...]:
    warnings = []
    for key in data:
        if isinstance(key, str) and key.startswith("x-"):
            continue
        if key not in TOP_LEVEL:
            raise InvalidSpec(f"{key}: unknown top-level key; allowed: {', '.join(TOP_LEVEL)}, x-*", param=str(key))
        if key in IGNORED_TOP_LEVEL and key != "version":
            warnings.append(f"{key}: not used by Tursi, which deploys only the models: section (ignored)")
    return tuple(warnings)
