"""ONNX quantization schemes for encoders, safest last: int4 -> int8 -> fp32.

Measured on all-MiniLM-L6-v2, x86 AVX2 without VNNI (7-bit weights): cosine vs fp32 onnxruntime over the 101
held-out sentences of tests/data/heldout_en.txt, one per call (min/mean); throughput vs fp32 onnxruntime on them in
length-sorted batches of 32, 1 / 2 threads (python -m bench.quality):
  int8 dynamic, 9 of 36 MatMuls kept fp32 by measured sensitivity  .988/.9965  1.36x / 1.18x  31 MB
  int8 dynamic, every MatMul                                       .975/.9923  1.59x / 1.38x  23 MB
  int8 static, FFN-out MatMuls in fp32 (24 other sentences)        .966/.993                  70 MB
  int4 MatMulNBits block 32 asym                                   .911/.975   ~0.8x          55 MB
  fp32                                                             1/1         1x             90 MB
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The scheme to try when one fails the quality guard.
FALLBACK = {"int4": "int8-dynamic", "int8-static": "int8-dynamic", "int8-dynamic": "fp32", "fp32": None}
STATIC_LENGTH = 128  # calibration inputs are padded to one shape so the activation ranges are comparable
# (how it was done, extra manifest fields): each scheme's answer
SchemeResult = tuple[str, dict[str, Any]]
Note = Callable[[str], None]  # a progress line (long steps say something every few seconds)
MAX_EMULATED_BYTES = 900 << 20  # the sensitivity emulator holds the fp32 weights twice in one protobuf


def int8_dynamic(src: Path, dst: Path, params: dict[str, Any], source: Path, note: Note) -> SchemeResult:
    """Every MatMul int8, then (embeddings) the most sensitive ones back to fp32, as measured on calibration texts."""
    rr = bool(params.get("reduce_range", False))
    quantize_dynamic_int8(src, dst, params, exclude=[])
    weights = "per-channel QInt8 weights" + (", 7-bit" if rr else "")
    if not params.get("fp32_by_sensitivity") or params.get("task") != "embeddings":
        return f"int8 dynamic ({weights})", {}
    size = sum(f.stat().st_size for f in src.parent.glob(f"{src.name}*"))  # model.onnx and any external data
    if size > MAX_EMULATED_BYTES:
        why = f"not searched: the fp32 model is {size >> 20} MiB; its emulator would pass protobuf's 2 GiB limit"
        return f"int8 dynamic ({weights})", {"int8_sensitivity": {"skipped": why}}
    section = _sensitivity(src, dst, note)
    kept = section["nodes_to_exclude"]
    if kept:
        quantize_dynamic_int8(src, dst, params, exclude=kept)
    how = (
        f"int8 dynamic ({weights}), {len(kept)} MatMuls kept fp32 by measured sensitivity "
        f"({100 * section['fp32_macs_share']:.0f}% of multiply-adds)"
    )
    return how, {"int8_sensitivity": section}


def _sensitivity(src: Path, dst: Path, note: Note) -> dict[str, Any]:
    """The search's section for the all-int8 ``dst``: from the cache when this fp32 model was searched before."""
    import dataclasses

    from converters import int8_sensitivity, sensitivity_cache

    texts, targets = calibration_texts(None), int8_sensitivity.Targets()
    k = sensitivity_cache.key(src, dst, texts, dataclasses.asdict(targets))
    cached = sensitivity_cache.load(k)
    if cached is not None:
        note(f"int8 sensitivity: reusing the search made for this model earlier ({sensitivity_cache.cache_dir()})")
        return {**cached, "reused": True}
    section = int8_sensitivity.choose(src, dst, dst.parent, texts, _threads(), targets, note)
    if "cap" not in section["stopped"]:  # a search cut by the time cap depends on the machine's load: not kept
        sensitivity_cache.store(k, section)
    return section


def quantize_dynamic_int8(src: Path, dst: Path, params: dict[str, Any], exclude: list[str]) -> None:
    """onnxruntime's dynamic int8 with the plan's weight settings, every MatMul but ``exclude`` (bench/quality too)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=bool(params.get("per_channel", True)),
        reduce_range=bool(params.get("reduce_range", False)),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        extra_options={"MatMulConstBOnly": True},
    )


def _threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def int4(src: Path, dst: Path, params: dict[str, Any], source: Path, note: Note) -> SchemeResult:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    block = int(params.get("block_size", 32))
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)), bits=4, block_size=block, is_symmetric=False, accuracy_level=4
    )  # 4: int8 compute on the activations, the fast CPU path
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return f"int4 weight-only MatMulNBits (block {block}, asymmetric, int8 compute)", {}


def int8_static(src: Path, dst: Path, params: dict[str, Any], source: Path, note: Note) -> SchemeResult:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    texts = calibration_texts(params.get("calibration"))
    matmuls = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "MatMul"]
    # The feed-forward output projections see GELU activations with long tails: 8-bit ranges clip them
    # (min cosine .84 -> .96 on MiniLM when they stay in fp32).
    sensitive = [n for n in matmuls if n.endswith("/output/dense/MatMul") and "attention" not in n]
    quantize_static(
        str(src),
        str(dst),
        _CalibrationReader(source, src, texts),
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=sensitive,
        extra_options={"MatMulConstBOnly": True},
    )
    return (
        f"int8 static (MinMax over {len(texts)} calibration texts, {len(sensitive)} FFN-output MatMuls kept fp32)",
        {},
    )


def fp32(src: Path, dst: Path, params: dict[str, Any], source: Path, note: Note) -> SchemeResult:
    shutil.copyfile(src, dst)
    return "fp32 (no quantization)", {}


SCHEMES: dict[str, Callable[[Path, Path, dict[str, Any], Path, Note], SchemeResult]] = {
    "int8-dynamic": int8_dynamic,
    "int8-static": int8_static,
    "int4": int4,
    "fp32": fp32,
}


def calibration_texts(path: str | None) -> list[str]:
    file = Path(path) if path else Path(__file__).with_name("calibration_en.txt")
    texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(texts) < 8:
        raise ValueError(f"{file}: calibration needs at least 8 non-empty lines, found {len(texts)}")
    return texts


class _CalibrationReader:
    """Feeds the calibration texts one at a time, padded to STATIC_LENGTH (onnxruntime's CalibrationDataReader)."""

    def __init__(self, source: Path, model: Path, texts: list[str]) -> None:
        import numpy as np
        import onnx
        from tokenizers import Tokenizer

        names = {i.name for i in onnx.load(str(model), load_external_data=False).graph.input}
        tok = Tokenizer.from_file(str(source / "tokenizer.json"))
        tok.enable_truncation(max_length=STATIC_LENGTH)
        tok.enable_padding(length=STATIC_LENGTH)
        feeds = []
        for enc in tok.encode_batch(texts):
            feed = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
            feeds.append({k: np.array([v], dtype=np.int64) for k, v in feed.items() if k in names})
        self._items = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._items, None)
