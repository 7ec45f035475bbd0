"""Every environment variable Tursi reads: declared once here (name, type, default, meaning, who reads it) and
read only here, from a mapping the caller injects (``Settings.load(os.environ)`` in a ``main()``), never at import
time, so tests never touch ``os.environ``.

A Settings field declares its variable with ``_var``; ``declared()`` lists them all, with the variables that only
shape a default (``XDG_DATA_HOME``, ``HOME``) and the third-party ones Tursi sets or hands to its children (passed
through). docs/environment.md is generated from ``declared()`` (docs/generate.py); tests/unit/test_settings.py
keeps the two equal and fails when another module reads the environment itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tursi.core.errors import InvalidSpec

OFF = frozenset({"", "0", "false", "no", "off"})  # a flag is on for any other value ("1", "true", "yes", "on", ...)


@dataclass(frozen=True)
class Variable:
    """One environment variable as docs/environment.md shows it."""

    name: str
    kind: str  # flag | seconds | bytes | count | text | path
    default: str  # as documented; "" when unset means "none"
    meaning: str
    read_by: str  # tursi (the CLI), tursid, workers, converters; "passed through" for a library's own variable
    cli_only: bool = False  # how the CLI reaches a daemon (or its secret): never handed to tursid or its children


def flag(value: str | None) -> bool:
    """One reading of a boolean variable everywhere: 0, false, no, off and empty are off; anything else is on."""
    return (value or "").strip().lower() not in OFF


def _var(
    name: str, default: Any, meaning: str, read_by: str, kind: str, shown: str | None = None, cli_only: bool = False
) -> Any:
    shown = shown if shown is not None else ("" if default is None else str(default))
    return field(default=default, metadata={"variable": Variable(name, kind, shown, meaning, read_by, cli_only)})


def _parse(variable: Variable, raw: str) -> Any:
    """``raw`` as the variable's kind, else InvalidSpec naming the variable."""
    if variable.kind == "flag":
        return flag(raw)
    if variable.kind in ("text", "path"):
        return raw
    try:
        number = float(raw) if variable.kind == "seconds" else int(raw)
    except ValueError:
        number = -1
    if not math.isfinite(number) or number < 0:
        kind = "a number of seconds" if variable.kind == "seconds" else f"a whole number ({variable.kind})"
        raise InvalidSpec(f"{variable.name}={raw[:40]!r}: expected {kind}", hint=f"unset {variable.name} or fix it")
    return number


def _load_fields(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Every declared field of ``cls`` that ``env`` sets (an empty value counts as unset)."""
    values = {}
    for f in fields(cls):
        variable = f.metadata.get("variable")
        raw = env.get(variable.name, "") if variable is not None else ""
        if variable is not None and raw != "":
            values[f.name] = _parse(variable, raw)
    return values


@dataclass(frozen=True)
class HttpSettings:
    """What tursid's TCP listener and every worker apply to connections and requests."""

    body_timeout_s: float = _var(
        "TURSI_BODY_TIMEOUT", 30.0, "seconds a request body may take to arrive (then 408)", "tursid, workers", "seconds"
    )
    write_timeout_s: float = _var(
        "TURSI_WRITE_TIMEOUT",
        30.0,
        "seconds a streaming client may leave the stream unread before its connection is cut: a stalled reader "
        "cannot hold the model",
        "tursid, workers",
        "seconds",
    )
    header_timeout_s: float = _var(
        "TURSI_HEADER_TIMEOUT",
        15.0,
        "seconds a request's headers may take, and an idle keep-alive connection may stay open (at least 0.5)",
        "tursid, workers",
        "seconds",
    )
    max_connections_per_client: int = _var(
        "TURSI_MAX_CONNECTIONS_PER_CLIENT",
        256,
        "open TCP connections one address may hold on a worker or `tursid --listen`; over it a connection gets "
        "503 `too_many_connections` and is closed",
        "tursid, workers",
        "count",
    )
    max_connections: int = _var(
        "TURSI_MAX_CONNECTIONS",
        1024,
        "open TCP connections everyone together may hold on a worker or `tursid --listen` (less when the "
        "descriptor limit is lower); over it 503 `too_many_connections`",
        "tursid, workers",
        "count",
    )
    send_buffer: int = _var(
        "TURSI_SEND_BUFFER",
        0,
        "bytes of kernel send buffer per connection on workers and `tursid --listen`; 0 leaves the kernel's "
        "autotuning (up to ~4 MB); a small value bounds what slow readers park in kernel memory on small devices",
        "tursid, workers",
        "bytes",
    )

    @classmethod
    def load(cls, env: Mapping[str, str]) -> HttpSettings:
        return cls(**_load_fields(cls, env))


HOME_DEFAULT = "$XDG_DATA_HOME/tursi, else ~/.local/share/tursi"


@dataclass(frozen=True)
class Settings:
    home: Path = _var(
        "TURSI_HOME",
        None,
        "state (`state.db`), artifacts, logs, the control socket and tursid's TLS files",
        "tursi, tursid, converters",
        "path",
        HOME_DEFAULT,
    )
    config_dir: Path = _var(
        "XDG_CONFIG_HOME",
        None,
        "where the CLI keeps `tursi/contexts.json` (0600), its named daemons",
        "tursi",
        "path",
        "~/.config",
    )
    docker_config: str | None = _var(
        "DOCKER_CONFIG",
        None,
        "folder of Docker's `config.json`: registry credentials Tursi reads when it has none of its own "
        "(`tursi login`)",
        "tursi, tursid",
        "path",
        "~/.docker",
    )
    host: str | None = _var(
        "TURSI_HOST",
        None,
        "daemon address for the CLI, like `--daemon`: `unix:///path` or `http(s)://host:port`",
        "tursi",
        "text",
        cli_only=True,
    )
    token: str | None = _var(
        "TURSI_TOKEN",
        None,
        "control token for the daemon named by `--daemon` or `TURSI_HOST` (never sent to a context's daemon, which "
        "uses its own stored token; never sent over `http://` to a non-loopback host: exit 77 `insecure_transport`)",
        "tursi",
        "text",
        cli_only=True,
    )
    tls_fingerprint: str | None = _var(
        "TURSI_TLS_FINGERPRINT",
        None,
        "`sha256:...` of the daemon's certificate: the CLI trusts that certificate and no other",
        "tursi",
        "text",
        cli_only=True,
    )
    tls_ca: str | None = _var(
        "TURSI_TLS_CA",
        None,
        "a CA (or the daemon's own certificate) file to verify the daemon against, host name included",
        "tursi",
        "path",
        cli_only=True,
    )
    no_autostart: bool = _var(
        "TURSI_NO_AUTOSTART",
        False,
        "the CLI never starts a daemon (run `tursid` yourself, for example under systemd)",
        "tursi",
        "flag",
        "off",
    )
    debug: bool = _var(
        "TURSI_DEBUG",
        False,
        "the CLI prints the traceback of an internal error; tursid logs at DEBUG level",
        "tursi, tursid",
        "flag",
        "off",
    )
    stop_grace_s: float = _var(
        "TURSI_STOP_GRACE",
        10.0,
        "seconds between SIGTERM and SIGKILL when stopping a worker",
        "tursid",
        "seconds",
    )
    ready_timeout_s: float = _var("TURSI_READY_TIMEOUT", 120.0, "seconds `up` waits for `/ready`", "tursid", "seconds")
    gateway: str = _var(
        "TURSI_GATEWAY",
        "127.0.0.1:8585",
        "where tursid serves the gateway (one port for every deployment, routed by `model`): HOST:PORT, or `off`",
        "tursid",
        "text",
    )
    ui: str = _var(
        "TURSI_UI",
        "127.0.0.1:8586",
        "where tursid serves the dashboard (`tursi ui`): a loopback HOST:PORT, or `off`",
        "tursid",
        "text",
    )
    keep_alive: str = _var(
        "TURSI_KEEP_ALIVE",
        "5m",
        "how long a deployment that sets no `--keep-alive` stays loaded without requests (like Ollama's "
        "`OLLAMA_KEEP_ALIVE`): a duration, `0` or `forever`",
        "tursid",
        "text",
    )
    memory_budget: str = _var(
        "TURSI_MEMORY_BUDGET",
        "",
        "memory tursid lets loaded models use (like 3G): a load beyond it unloads idle, unpinned deployments, least "
        "recently used first, or is refused with 503 `insufficient_memory`; empty: physical memory minus a reserve "
        "for the system (10 %, at least 512 MiB)",
        "tursid",
        "text",
    )
    sample_interval_s: float = _var("TURSI_SAMPLE_INTERVAL", 2.0, "seconds between stats samples", "tursid", "seconds")
    log_max_bytes: int = _var(
        "TURSI_LOG_MAX_BYTES",
        10 * 1024 * 1024,
        "log rotation: size of one log file; also bounds an autostarted tursid's `tursid.log`",
        "tursid",
        "bytes",
        "10485760 (10 MiB)",
    )
    log_files: int = _var(
        "TURSI_LOG_FILES", 3, "log rotation: rotated files kept besides the current one", "tursid", "count"
    )
    max_bundle_bytes: int = _var(
        "TURSI_MAX_BUNDLE_BYTES",
        64 << 30,
        "cap on an imported bundle and on any file in it",
        "tursid",
        "bytes",
        f"{64 << 30} (64 GiB)",
    )
    failpoints: bool = _var(
        "TURSI_FAILPOINTS",
        False,
        "fault-injection tests only: arms the failpoints named in `$TURSI_HOME/failpoints.json` "
        "(tursi/core/failpoints.py)",
        "tursid, converters",
        "flag",
        "off",
    )
    http: HttpSettings = field(default_factory=HttpSettings)

    @classmethod
    def load(cls, env: Mapping[str, str]) -> Settings:
        values = _load_fields(cls, env)
        values["home"] = Path(values.get("home") or _data_home(env) / "tursi").expanduser().absolute()
        values["config_dir"] = Path(values.get("config_dir") or _user_home(env) / ".config")
        return cls(**values, http=HttpSettings.load(env))

    @property
    def autostart(self) -> bool:
        return not self.no_autostart

    @property
    def socket_path(self) -> Path:
        return self.home / "tursid.sock"

    @property
    def lock_path(self) -> Path:
        return self.home / "tursid.lock"

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def daemon_log(self) -> Path:
        return self.home / "tursid.log"

    @property
    def registries_path(self) -> Path:
        """The CLI's registry credentials (`tursi login`, 0600)."""
        return self.config_dir / "tursi" / "registries.json"

    @property
    def docker_config_path(self) -> Path:
        return Path(self.docker_config or self.config_dir.parent / ".docker") / "config.json"

    @property
    def contexts_path(self) -> Path:
        return self.config_dir / "tursi" / "contexts.json"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.logs_dir, self.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


def _user_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _data_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_DATA_HOME") or _user_home(env) / ".local" / "share")


def cache_home(env: Mapping[str, str]) -> Path:
    """Where Tursi keeps what it can rebuild (runtime builds, the int8 sensitivity searches): ``~/.cache/tursi``."""
    return Path(env.get("XDG_CACHE_HOME") or _user_home(env) / ".cache") / "tursi"


def debug_from(env: Mapping[str, str]) -> bool:
    """TURSI_DEBUG alone, for code that must not fail on another variable's bad value (the CLI's last resort)."""
    return flag(env.get("TURSI_DEBUG"))


def failpoints_file(env: Mapping[str, str]) -> Path | None:
    """``$TURSI_HOME/failpoints.json`` when TURSI_FAILPOINTS is on and TURSI_HOME is set, else None."""
    home = env.get("TURSI_HOME", "")
    return Path(home) / "failpoints.json" if flag(env.get("TURSI_FAILPOINTS")) and home else None


# Read only to find a default (of TURSI_HOME, of the contexts file).
DEFAULT_SOURCES = (
    Variable(
        "XDG_DATA_HOME", "path", "~/.local/share", "TURSI_HOME defaults to `$XDG_DATA_HOME/tursi`", "tursi, tursid"
    ),
    Variable(
        "XDG_CACHE_HOME",
        "path",
        "~/.cache",
        "`$XDG_CACHE_HOME/tursi`: the int8 sensitivity searches' answers (converters), beside the runtime builds "
        "of `make install` and the bench; deleting it only costs time",
        "converters",
    ),
    Variable(
        "HOME",
        "path",
        "the user's home",
        "the base of `~/.local/share`, `~/.config` and `~/.cache` when their `XDG_*` variable is unset",
        "tursi, tursid",
    ),
)

# Third-party variables Tursi sets, or deliberately hands to its child processes (workers, converters, an
# autostarted tursid); Tursi itself never parses them.
PASSED_THROUGH = (
    Variable(
        "HF_HUB_OFFLINE",
        "flag",
        "1 for converters",
        "huggingface_hub: cache only. tursid resolves and downloads hub models itself, so it sets 1 for the "
        "converter child unless already set; `HF_HUB_OFFLINE=1` on tursid uses the cache only",
        "passed through",
    ),
    Variable("HF_ENDPOINT", "text", "", "huggingface_hub: a mirror of the hub", "passed through"),
    Variable(
        "HF_HOME",
        "path",
        "~/.cache/huggingface",
        "huggingface_hub: its cache (read before any download)",
        "passed through",
    ),
    Variable(
        "HUGGING_FACE_HUB_TOKEN",
        "text",
        "",
        "huggingface_hub: a token for gated models; an autostarted tursid gets it, workers and converters never do",
        "passed through",
    ),
    Variable(
        "OMP_NUM_THREADS",
        "count",
        "",
        "OpenMP threads of the model libraries; handed to tursid and its children",
        "passed through",
    ),
    Variable(
        "AIOHTTP_NO_EXTENSIONS",
        "flag",
        "",
        "set to 1 (with `YARL_NO_EXTENSIONS`, `MULTIDICT_NO_EXTENSIONS`, `PROPCACHE_NO_EXTENSIONS`, "
        "`FROZENLIST_NO_EXTENSIONS`) only while tursid imports aiohttp, to keep its memory small; restored "
        "afterwards, so workers get the fast extensions",
        "passed through",
    ),
)


def declared() -> tuple[Variable, ...]:
    """Every variable Tursi reads or passes through, in the order docs/environment.md lists them."""
    own = tuple(
        f.metadata["variable"] for cls in (Settings, HttpSettings) for f in fields(cls) if "variable" in f.metadata
    )
    return own + DEFAULT_SOURCES + PASSED_THROUGH


def cli_only() -> frozenset[str]:
    """Variables that say how the CLI reaches a daemon (and its secret): no daemon or child process gets them."""
    return frozenset(v.name for v in declared() if v.cli_only)
