"""One entry of a Compose file's ``models:`` as a deployment: Compose's own keys, Tursi's under ``x-tursi``.

Compose's keys: ``model`` (the reference), ``context_size`` (-> ``ctx_size``) and ``runtime_flags`` (llama.cpp
flags; those with a spec equivalent are taken, any other is an error naming it). ``x-tursi`` takes every field of
``DeploymentSpec`` by its name (``rate_limit`` or ``rate-limit``) but ``model`` and ``name`` (the entry's key is
the deployment's name) and ``api_key``: a key is never written in the file, it is read from ``api_key_env`` (a
variable's name) or ``api_key_file`` (a path). Values are checked by the spec's own Options; an error names the key
path (``models.chat.x-tursi.bits``) and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tursi.core.access import check_key
from tursi.core.errors import InvalidSpec
from tursi.core.names import NAME_RULE, is_valid_name, slug
from tursi.core.refs import ALIASES
from tursi.core.spec import Option, option_of, spec_fields

X_TURSI = "x-tursi"
COMPOSE_KEYS = ("model", "context_size", "runtime_flags", X_TURSI)
NOT_IN_X_TURSI = ("model", "name", "api_key")  # from `model:`, from the entry's key, from a secret source
KEY_SOURCES = ("api_key_env", "api_key_file")
LABEL_PREFIX = "com.tursi.compose."
RESERVED_LABELS = 2  # the project and config-hash labels Tursi adds
KEY_FILE_MAX = 4096
# llama.cpp's flags with a spec equivalent -> the spec field
RUNTIME_FLAGS = {
    "--ctx-size": "ctx_size",
    "-c": "ctx_size",
    "--threads": "threads",
    "-t": "threads",
    "--parallel": "parallel",
    "-np": "parallel",
    "--port": "port",
    "--host": "host",
}


def x_tursi_keys() -> tuple[str, ...]:
    """What ``x-tursi`` takes: the spec's fields (so a new option appears here by itself) and the key sources."""
    return tuple(f.name for f in spec_fields() if f.name not in NOT_IN_X_TURSI) + KEY_SOURCES


@dataclass(frozen=True)
class ComposeModel:
    """One model entry, checked: the spec options it gives and where its API key comes from."""

    name: str
    options: dict[str, Any]  # spec field -> checked value, `model` included; labels: the file's own
    key_source: tuple[str, str] | None = None  # ("api_key_env", "VAR") or ("api_key_file", "path")
    api_key: str | None = field(default=None, repr=False)

    @property
    def config_hash(self) -> str:
        """What `up` compares: the options and the key's sha256 (a rotated key redeploys), never the key."""
        key_sha = hashlib.sha256(self.api_key.encode()).hexdigest() if self.api_key else None
        blob = json.dumps({"options": self.options, "api_key_sha256": key_sha}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def normalized(self) -> dict[str, Any]:
        """The entry as `config` prints it: runtime flags folded into the keys they set, no secret."""
        extra = {k: v for k, v in self.options.items() if k not in ("model", "ctx_size")}
        if self.key_source is not None:
            extra[self.key_source[0]] = self.key_source[1]
        entry: dict[str, Any] = {"model": self.options["model"]}
        if "ctx_size" in self.options:
            entry["context_size"] = self.options["ctx_size"]
        if extra:
            entry[X_TURSI] = extra
        return entry


def parse_model(key: Any, entry: Any, base: Path, env: Mapping[str, str]) -> ComposeModel:
    """``models.<key>`` as a ComposeModel; paths in it are relative to ``base`` (the file's folder)."""
    path = f"models.{key}"
    if not is_valid_name(key):
        hint = f" (like {slug(str(key))!r})" if isinstance(key, str) else ""
        raise InvalidSpec(f"{path}: a model's key is its deployment name and must match {NAME_RULE}{hint}", param=path)
    if not isinstance(entry, dict):
        raise InvalidSpec(f"{path} must be a mapping with model: and optional {', '.join(COMPOSE_KEYS[1:])}")
    for k in entry:
        if k not in COMPOSE_KEYS and not (isinstance(k, str) and k.startswith("x-")):
            raise _unknown(f"{path}.{k}", COMPOSE_KEYS + ("x-*",))
    model = _model(entry.get("model"), path, base)
    raw = _gather(entry, path)
    source = _key_source(raw.pop("api_key_env", None), raw.pop("api_key_file", None))
    options = {name: _checked(name, value, where, base) for name, (value, where) in raw.items()}
    options["model"] = model
    _check_labels(options.get("labels"), f"{path}.{X_TURSI}.labels")
    api_key = _read_key(source, env, base) if source else None
    ordered = {f.name: options[f.name] for f in spec_fields() if f.name in options}
    return ComposeModel(key, ordered, (source[0], source[1]) if source else None, api_key)


def _gather(entry: dict[Any, Any], path: str) -> dict[str, tuple[Any, str]]:
    """Every option the entry gives, by spec field: (value as written, its key path). One option given twice
    (``context_size`` and ``--ctx-size``) is an error naming both places."""
    found: dict[str, tuple[Any, str]] = {}

    def put(name: str, value: Any, where: str) -> None:
        if name in found:
            raise InvalidSpec(f"{where}: {name} is already set at {found[name][1]}", param=where)
        found[name] = (value, where)

    if entry.get("context_size") is not None:
        put("ctx_size", entry["context_size"], f"{path}.context_size")
    for name, value, where in _runtime_flags(entry.get("runtime_flags"), f"{path}.runtime_flags"):
        put(name, value, where)
    x_tursi = entry.get(X_TURSI)
    if x_tursi is not None and not isinstance(x_tursi, dict):
        raise InvalidSpec(f"{path}.{X_TURSI} must be a mapping of {', '.join(x_tursi_keys())}")
    allowed = x_tursi_keys()
    for k, value in (x_tursi or {}).items():
        where = f"{path}.{X_TURSI}.{k}"
        name = k.replace("-", "_") if isinstance(k, str) else k
        if name == "api_key":
            raise InvalidSpec(f"{where}: an API key is never written in the file: use api_key_env or api_key_file")
        if name not in allowed:
            raise _unknown(where, allowed)
        put(name, value, where)
    return found


def _runtime_flags(flags: Any, path: str) -> list[tuple[str, str, str]]:
    """(spec field, value, key path) for each llama.cpp flag; a flag with no spec equivalent is an error."""
    if flags is None:
        return []
    if not isinstance(flags, list):
        raise InvalidSpec(f"{path} must be a list of flags like --ctx-size=4096", param=path)
    tokens = [(t, f"{path}[{i}]") for i, item in enumerate(flags) for t in shlex.split(str(item))]
    found, i = [], 0
    while i < len(tokens):
        token, where = tokens[i]
        flag, sep, value = token.partition("=")
        if flag not in RUNTIME_FLAGS:
            if flag == "--api-key":
                raise InvalidSpec(f"{where}: an API key is never written in the file: use x-tursi.api_key_env")
            raise _unknown(where, tuple(RUNTIME_FLAGS), what=f"runtime flag {flag!r}")
        if not sep:
            i += 1
            if i == len(tokens):
                raise InvalidSpec(f"{where}: {flag} needs a value", param=where)
            value = tokens[i][0]
        found.append((RUNTIME_FLAGS[flag], value, where))
        i += 1
    return found


def _unknown(where: str, allowed: tuple[str, ...], what: str | None = None) -> InvalidSpec:
    return InvalidSpec(f"{where}: unknown {what or 'key'}; allowed: {', '.join(allowed)}", param=where)


def _checked(name: str, value: Any, where: str, base: Path) -> Any:
    """``value`` checked by the spec field's Option, after the coercions a YAML file needs."""
    f = next(f for f in spec_fields() if f.name == name)
    opt = option_of(f)
    value = _coerce(opt, value)
    if opt.kind == "file" and isinstance(value, str):
        value = str((base / Path(value).expanduser()).absolute())
    if opt.kind == "pairs" and isinstance(value, list):  # Compose also writes labels as a list of KEY=VALUE
        value = dict(str(item).partition("=")[::2] for item in value)
    if opt.kind == "pairs" and isinstance(value, dict):
        value = {k: _label_text(v) for k, v in value.items()}
    try:
        return opt.check(name, value, f.default)
    except InvalidSpec as e:
        raise InvalidSpec(f"{where}: {e.detail.replace(opt.flag(name), name)}", param=where) from None


def _label_text(value: Any) -> Any:
    """A label's value as Compose writes it: numbers and booleans as text, nothing as ""."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, bool | int | float) else value


def _coerce(opt: Option, value: Any) -> Any:
    """A string where a number or boolean is meant (``${PORT:-8080}`` is text) as that number or boolean; a
    number where text is meant (``keep_alive: 0``) as text."""
    if isinstance(value, str):
        text = value.strip()
        numeric = opt.kind in ("int", "float") or (
            opt.kind == "choice" and all(isinstance(c, int) for c in opt.choices)
        )
        try:
            if numeric:
                return float(text) if opt.kind == "float" else int(text)
        except ValueError:
            return value
        if opt.kind == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    if opt.kind == "str" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _model(value: Any, path: str, base: Path) -> str:
    """The reference; one naming a file or folder beside the compose file made absolute (tursid has its own
    working directory). Aliases win over a folder of the same name, as in tursid."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSpec(f"{path}.model is required: an alias (minilm, smollm2), a folder, a .gguf file or a hub id")
    if value.strip().lower() in ALIASES:
        return value
    try:
        candidate = base / Path(value).expanduser()
        return str(candidate.absolute()) if candidate.exists() else value
    except (RuntimeError, ValueError, OSError):  # an unknown ~user, a name too long: not a local path
        return value


def _check_labels(labels: dict[str, str] | None, where: str) -> None:
    mine = [k for k in labels or () if k.startswith(LABEL_PREFIX)]
    if mine:
        raise InvalidSpec(f"{where}.{mine[0]}: labels under {LABEL_PREFIX} are Tursi's own", param=where)
    maximum = int(option_of(next(f for f in spec_fields() if f.name == "labels")).maximum or 0)
    if labels and len(labels) > maximum - RESERVED_LABELS:
        raise InvalidSpec(f"{where}: at most {maximum - RESERVED_LABELS} labels (compose adds its own)", param=where)


def _key_source(env_name: tuple[Any, str] | None, file: tuple[Any, str] | None) -> tuple[str, str, str] | None:
    """(api_key_env or api_key_file, its value, its key path), or None for no key."""
    if env_name and file:
        raise InvalidSpec(f"{file[1]}: give api_key_env or api_key_file, not both (see {env_name[1]})")
    source, kind = (env_name, "api_key_env") if env_name else (file, "api_key_file")
    if source is None:
        return None
    if not isinstance(source[0], str) or not source[0]:
        raise InvalidSpec(f"{source[1]} must be a {'variable name' if env_name else 'path'}", param=source[1])
    return kind, source[0], source[1]


def _read_key(source: tuple[str, str, str], env: Mapping[str, str], base: Path) -> str:
    kind, ref, where = source
    if kind == "api_key_env":
        key = env.get(ref, "")
        if not key:
            raise InvalidSpec(f"{where}: variable {ref} is not set (it holds the model's API key)", param=where)
    else:
        try:
            with (base / Path(ref).expanduser()).open("rb") as fh:
                key = fh.read(KEY_FILE_MAX + 1).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidSpec(f"{where}: cannot read {ref!r}: {e}", param=where) from None
    if key == "auto" or len(key) > KEY_FILE_MAX:
        raise InvalidSpec(f"{where}: {ref} holds no usable API key ('auto' is not one here)", param=where)
    try:
        return check_key(key)
    except InvalidSpec as e:
        raise InvalidSpec(f"{where}: the key in {ref} is too weak: {e.detail}", param=where) from None
