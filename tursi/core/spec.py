"""The deployment spec: every option of `tursi up` declared once, with what it means and which values it takes.

Each field of ``DeploymentSpec`` carries an ``Option`` (help, kind, range or choices, group, ...). From these come
the CLI's options (``tursi.cli.spec_options``), the control API's parsing (``DeploymentSpec.parse``), the OpenAPI
request schema (``tursi.http.openapi``), what a deployment stores (``stored_options`` / ``from_stored``) and the
settings tursid hands a worker (``tursi.core.worker_settings``). Adding an option is one field here plus the code
that uses it.

Groups: ``source`` (the model), ``placement`` (name, port, host: a deployment's own columns), ``conversion`` (what
the artifact is made of: `tursi build` takes these), ``serving`` (how it runs; ``worker=True`` ones go to the worker),
``metadata`` (kept on the deployment for people and tools).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from tursi.core.access import check_key, parse_rate_limit
from tursi.core.durations import normalize_keep_alive
from tursi.core.errors import InvalidSpec
from tursi.core.health import HealthCheck
from tursi.core.names import NAME_RULE
from tursi.core.restart import Backoff, RestartPolicy

DEFAULT_PARALLEL = 4  # LLM slots when --parallel is not given
DEFAULT_MIN_QUALITY = {"embeddings": 0.85, "classification": 0.75, "fill-mask": 0.5, "rerank": 0.8, "chat": 0.50}
GROUPS = ("source", "placement", "conversion", "serving", "metadata")
KINDS = ("str", "int", "float", "bool", "choice", "file", "pairs")
PAIR_VALUE_MAX = 256
PAIR_VALUE = rf"[^\u0000-\u001f\u007f-\u009f]{{0,{PAIR_VALUE_MAX}}}"  # a "pairs" value: printable, no controls


@dataclass(frozen=True)
class Option:
    """What one field of the spec is, for every place that reads or writes it."""

    help: str
    group: str  # one of GROUPS
    kind: str = "str"  # one of KINDS; "file": a path to a readable file; "pairs": KEY=VALUE (a JSON object)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    auto: Any = None  # a value outside the range that also means "the default" (threads 0: physical cores)
    pattern: str | None = None  # a str (a "pairs" key) must match it whole; "pairs": ``maximum`` counts pairs
    message: str | None = None  # what a wrong value is told (else worded from kind and range)
    normalize: Callable[[Any], Any] | None = None  # a check or rewrite of a given value after the generic one
    required: bool = False
    argument: bool = False  # a positional CLI argument rather than an --option
    metavar: str | None = None
    default_text: str | None = None  # how --help shows the default when the value alone says little
    worker: bool = False  # handed to the worker process (WorkerSettings)
    stored_as: str | None = None  # its key in a deployment's stored options, when not its name
    flag_name: str | None = None  # its CLI flag, when not --NAME (one --label per pair of "labels")

    def flag(self, name: str) -> str:
        return "--" + (self.flag_name or name.replace("_", "-"))

    def wrong(self, name: str, value: Any) -> InvalidSpec:
        return InvalidSpec(self.message or self._worded(name, value), param=name)

    def _worded(self, name: str, value: Any) -> str:
        flag, lo, hi = self.flag(name), self.minimum, self.maximum
        if self.kind == "bool":
            return f"'{name}' must be true or false"
        if self.kind == "choice":
            return f"{flag} must be " + " or ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        if self.kind == "file":
            return f"{flag} {value!r} is not a readable file"
        if self.kind == "pairs":
            return (
                f"{flag} takes at most {hi} KEY=VALUE pairs: KEY matching {self.pattern}, VALUE text of at most "
                f"{PAIR_VALUE_MAX} printable characters"
            )
        number = "an integer" if self.kind == "int" else "a number"
        if hi is None:
            return f"{flag} must be {number} >= {lo}"
        auto = f", or {self.auto} for the default" if self.auto is not None else ""
        return f"{flag} must be {number} from {lo} to {hi}{auto}"

    def check(self, name: str, value: Any, default: Any) -> Any:
        """``value`` from a request as the spec holds it. None (or '' where no pattern applies) is the default."""
        if value is None or (value == "" and self.pattern is None and not self.required):
            if self.required:
                raise self.wrong(name, value)
            return default
        if self.auto is not None and type(value) is type(self.auto) and value == self.auto:
            return default
        checked = _KIND_CHECKS[self.kind](self, value)
        if checked is _WRONG:
            raise self.wrong(name, value)
        return self.normalize(checked) if self.normalize is not None else checked


_WRONG = object()


def _check_int(opt: Option, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int) or not _in_range(opt, v):
        return _WRONG
    return v


def _check_float(opt: Option, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float) or not _in_range(opt, v):
        return _WRONG
    try:
        return float(v)
    except OverflowError:  # an integer of 400 digits
        return _WRONG


def _in_range(opt: Option, v: float) -> bool:
    return (opt.minimum is None or v >= opt.minimum) and (opt.maximum is None or v <= opt.maximum)


def _check_choice(opt: Option, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, str | int) or v not in opt.choices:
        return _WRONG
    return v


def _check_str(opt: Option, v: Any) -> Any:
    if not isinstance(v, str) or (opt.pattern is not None and not re.fullmatch(opt.pattern, v)):
        return _WRONG
    return v


def _check_file(opt: Option, v: Any) -> Any:
    return v if isinstance(v, str) and Path(v).is_file() else _WRONG


def _check_pairs(opt: Option, v: Any) -> Any:
    if not isinstance(v, dict) or (opt.maximum is not None and len(v) > opt.maximum):
        return _WRONG
    for key, value in v.items():
        if opt.pattern is not None and not re.fullmatch(opt.pattern, key):
            return _WRONG
        if not isinstance(value, str) or not re.fullmatch(PAIR_VALUE, value):
            return _WRONG
    return dict(v)


_KIND_CHECKS: dict[str, Callable[[Option, Any], Any]] = {
    "str": _check_str,
    "int": _check_int,
    "float": _check_float,
    "bool": lambda _, v: v if isinstance(v, bool) else _WRONG,
    "choice": _check_choice,
    "file": _check_file,
    "pairs": _check_pairs,
}


def option(default: Any = None, *, secret: bool = False, **meta: Any) -> Any:
    """A spec field: its default and its ``Option``. A ``secret`` stays out of repr and stored options."""
    return field(default=default, repr=not secret, metadata={"option": Option(**meta), "secret": secret})


def _policy(spec: str) -> str:
    return str(RestartPolicy.parse(spec))


def _keep_alive(spec: str) -> str:
    try:
        return normalize_keep_alive(spec)
    except ValueError as e:
        raise InvalidSpec(f"--keep-alive: {e} (like 30s, 5m, 1h, 0 or forever)", param="keep_alive") from None


def _rate(spec: str) -> str:
    return str(parse_rate_limit(spec))


@dataclass(frozen=True)
class DeploymentSpec:
    model: str = option(
        "",
        group="source",
        required=True,
        argument=True,
        help="An alias (minilm, smollm2), a Hugging Face folder, a .gguf file, a hub id, a .tursi bundle "
        "or the key of a built artifact.",
        message="'model' is required: an alias, a folder, a file, a hub id or an artifact key",
    )
    name: str | None = option(
        group="placement",
        pattern=NAME_RULE,
        message=f"--name must match {NAME_RULE}",
        default_text="from the model",
        help="Deployment name.",
    )
    port: int | None = option(
        group="placement",
        kind="int",
        minimum=1,
        maximum=65535,
        default_text="a free one",
        help="Port for the inference API.",
    )
    host: str = option(
        "127.0.0.1", group="placement", message="'host' must be an address", help="Address the inference API binds."
    )
    quantization: str = option(
        "dynamic",
        group="conversion",
        kind="choice",
        choices=("dynamic", "static"),
        stored_as="quantization_scheme",  # a deployment's own `quantization` is the scheme it was converted to
        help="dynamic, or static (encoders: int8 calibrated on --calibration or a bundled set; GGUF: not yet).",
    )
    bits: int | None = option(
        group="conversion",
        kind="choice",
        choices=(4, 8),
        default_text="8 for encoders, 4 for LLMs",
        help="Weight bits: encoders ONNX int8 or int4 (MatMulNBits), LLMs GGUF Q8_0 or 4-bit (Q4_K_M on x86, Q4_0 "
        "on ARM); a quantized .gguf is served as is unless --bits is given.",
    )
    threads: int = option(
        0,
        group="serving",
        kind="int",
        minimum=1,
        maximum=1024,
        auto=0,
        worker=True,
        default_text="physical cores",
        help="Inference threads.",
    )
    ctx_size: int = option(
        0,
        group="serving",
        kind="int",
        minimum=16,
        maximum=1 << 20,
        auto=0,
        worker=True,
        default_text="min(4096, trained)",
        help="LLM context in tokens.",
    )
    parallel: int = option(
        0,
        group="serving",
        kind="int",
        minimum=1,
        maximum=64,
        auto=0,
        worker=True,
        default_text=f"{DEFAULT_PARALLEL}",
        help="LLMs: requests decoded together (slots sharing one KV cache of --ctx-size tokens).",
    )
    max_queue: int = option(
        32,
        group="serving",
        kind="int",
        minimum=0,
        maximum=4096,
        worker=True,
        help="Requests that may wait for the model; more get 503 with Retry-After.",
    )
    max_batch: int = option(
        32,
        group="serving",
        kind="int",
        minimum=1,
        maximum=1024,
        worker=True,
        help="Encoders: most texts one model run takes when concurrent requests are coalesced (1: off).",
    )
    batch_wait_ms: float = option(
        2.0,
        group="serving",
        kind="float",
        minimum=0,
        maximum=1000,
        worker=True,
        help="Encoders: once requests coalesce, how many ms a batch waits for more (a lone request never waits).",
    )
    target: str | None = option(
        group="conversion",
        metavar="PROFILE",
        message="--target must be a profile name",
        default_text="this machine",
        help="Plan for a target profile (rpi4, rpi5, jetson-orin-nano, x86-64-v3, x86-64-v4) instead of this machine.",
    )
    min_quality: float | None = option(
        group="conversion",
        kind="float",
        minimum=0,
        maximum=1,
        default_text=f"{DEFAULT_MIN_QUALITY['embeddings']} for embeddings, {DEFAULT_MIN_QUALITY['chat']:.2f} for LLMs",
        help="Quality guard: least min cosine (encoders) or greedy agreement (LLMs) vs fp32; "
        "below it, fall back to a safer scheme.",
    )
    calibration: str | None = option(
        group="conversion", kind="file", help="Text file (one sample per line) to calibrate --quantization static."
    )
    revision: str | None = option(
        group="conversion",
        pattern=r"[\w./-]{1,128}",
        message="--revision must be a branch, tag or commit",
        help="Hub revision (branch, tag or commit) for a hub id.",
    )
    allow_pickle: bool = option(
        False, group="conversion", kind="bool", help="Allow pickle weights (.bin/.pt) for sources you trust."
    )
    rate_limit: str | None = option(
        group="serving",
        metavar="SPEC",
        normalize=_rate,
        worker=True,
        message="--rate-limit must be a string like 100/minute",
        help="Per-client limit: N/second|minute|hour[;burst=M] "
        "(API key when sent, else address); over it: 429 with Retry-After.",
    )
    restart: str = option(
        "no",
        group="serving",
        metavar="POLICY",
        normalize=_policy,
        message="--restart must be a string",
        help=f"no | on-failure[:N] | always | unless-stopped (backoff from {Backoff.base_s * 1000:.0f} ms, "
        f"doubling, capped at {Backoff.cap_s:.0f} s).",
    )
    health_interval: float = option(
        HealthCheck.interval_s, group="serving", kind="float", minimum=0.1, help="Seconds between /ready probes."
    )
    health_timeout: float = option(
        HealthCheck.timeout_s, group="serving", kind="float", minimum=0.1, help="Seconds one probe may take."
    )
    health_retries: int = option(
        HealthCheck.retries, group="serving", kind="int", minimum=1, help="Failed probes before unhealthy."
    )
    health_start_period: float = option(
        HealthCheck.start_period_s,
        group="serving",
        kind="float",
        minimum=0.0,
        help="Seconds after start when failures do not count.",
    )
    restart_on_unhealthy: bool = option(
        False,
        group="serving",
        kind="bool",
        help="Restart the worker when it turns unhealthy (Docker never does; opt in here).",
    )
    keep_alive: str | None = option(
        None,
        default_text="5m, or tursid's TURSI_KEEP_ALIVE",
        group="serving",
        metavar="DURATION",
        normalize=_keep_alive,
        message="--keep-alive must be a duration like 30s, 5m, 1h, 0 or forever",
        help="Unload the model after this long without requests (its worker stops, `ps` shows idle); the next "
        "request to its port or through the gateway loads it again. 0: after each reply; -1 or forever: never.",
    )
    replicas: int = option(
        1,
        group="serving",
        kind="int",
        minimum=1,
        maximum=16,
        help="Workers of this deployment on one artifact (weights shared through the page cache): the gateway "
        "balances them by least outstanding requests; the others are NAME#2... on loopback ports.",
    )
    pin: bool = option(
        False,
        group="serving",
        kind="bool",
        help="Never unload this deployment to make room for another (the memory budget evicts only unpinned ones).",
    )
    api_key: str | None = option(
        group="serving",
        secret=True,  # the plain key lives in memory only: a deployment stores its sha256
        metavar="KEY|auto",
        normalize=check_key,
        message="--api-key must be a string or 'auto'",
        help="Require this API key (Bearer) on the inference routes; "
        "'auto' generates one and prints it once. /health, /ready and /metrics stay open.",
    )
    labels: dict[str, str] | None = option(
        group="metadata",
        kind="pairs",
        flag_name="label",
        pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}",
        maximum=32,
        metavar="KEY=VALUE",
        help="A label kept on the deployment (repeatable), shown by `ps --format json` and `inspect`.",
    )

    @classmethod
    def parse(cls, body: Mapping[str, Any], names: Collection[str] | None = None) -> DeploymentSpec:
        """A request body (JSON object) as a spec: every field in ``names`` (default: all) checked against its
        Option; the others keep their defaults. Keys the spec does not know are ignored."""
        values = {}
        for f in spec_fields():
            if names is None or f.name in names:
                values[f.name] = option_of(f).check(f.name, body.get(f.name), f.default)
        return cls(**values)

    @classmethod
    def from_stored(cls, options: Mapping[str, Any]) -> DeploymentSpec:
        """A deployment's stored options, from a row of any version, as a spec. A value that no longer passes
        (a calibration file since removed) reads as its default: a stored deployment must always restore."""
        values = {}
        for f in spec_fields(*STORED_GROUPS):
            opt = option_of(f)
            if not f.metadata["secret"]:
                try:
                    values[f.name] = opt.check(f.name, options.get(opt.stored_as or f.name), f.default)
                except InvalidSpec:
                    values[f.name] = f.default
        return cls(**values)

    def stored_options(self, *, api_key_sha256: str | None) -> dict[str, Any]:
        """What a deployment keeps of its spec (its `options` column): conversion and serving settings, the API
        key only as its sha256."""
        stored: dict[str, Any] = {}
        for f in spec_fields(*STORED_GROUPS):
            if not f.metadata["secret"]:
                stored[option_of(f).stored_as or f.name] = getattr(self, f.name)
        stored["api_key_sha256"] = api_key_sha256
        return stored

    def changed(self, *groups: str) -> tuple[str, ...]:
        """The fields of ``groups`` (default: all) whose value is not their default."""
        return tuple(f.name for f in spec_fields(*groups) if getattr(self, f.name) != f.default)

    def health_check(self) -> HealthCheck:
        return HealthCheck(self.health_interval, self.health_timeout, self.health_retries, self.health_start_period)

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy.parse(self.restart)


STORED_GROUPS = ("conversion", "serving", "metadata")


def spec_fields(*groups: str) -> tuple[Field[Any], ...]:
    """The spec's fields in declaration order (the order of `tursi up --help`), those of ``groups`` if given."""
    return tuple(f for f in fields(DeploymentSpec) if not groups or option_of(f).group in groups)


def option_of(f: Field[Any]) -> Option:
    return cast(Option, f.metadata["option"])


def field_names(*groups: str) -> tuple[str, ...]:
    return tuple(f.name for f in spec_fields(*groups))
