"""HF encoder folder -> ONNX (optimum-onnx) -> int8 dynamic (onnxruntime.quantization).

For embeddings, the int8 scheme keeps the MatMuls that int8 hurts most in fp32, chosen by measured sensitivity
(``int8_sensitivity``); the choice and its figures are the manifest's ``int8_sensitivity``."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.license_file import copy_license
from tursi.core import failpoints

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")

# A fixed probe set: the artifact is compared with the fp32 export on these.
PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "Edge devices run small models close to the data.",
    "How do I reset my password?",
    "Raspberry Pi 5 has four Cortex-A76 cores.",
    "Il pleut des cordes ce matin.",
    "Quantization trades a little accuracy for speed.",
    "SELECT name FROM users WHERE id = 42;",
    "A",
)

Progress = Callable[[str, str], None]
OPTIMUM_TASKS = {
    "embeddings": "feature-extraction",
    "classification": "text-classification",
    "fill-mask": "fill-mask",
    "rerank": "text-classification",
}
MASKED_PROBES = (
    "The capital of France is [MASK].",
    "She poured a cup of [MASK] and sat down.",
    "The [MASK] barked at the mailman.",
    "Water boils at one hundred degrees [MASK].",
    "He plays the [MASK] in a jazz band.",
    "Edge devices run models close to the [MASK].",
)


def pooling_config(source: Path) -> dict[str, Any]:
    """Pooling and normalisation as the model's sentence-transformers config says (mean, no L2 if none)."""
    pooling, normalize, max_len = "mean", False, 512
    modules = source / "modules.json"
    if modules.is_file():
        for mod in json.loads(modules.read_text(encoding="utf-8")):
            kind = mod.get("type", "")
            if kind.endswith("Normalize"):
                normalize = True
            if kind.endswith("Pooling"):
                cfg_path = source / mod.get("path", "") / "config.json"
                if cfg_path.is_file():
                    pooling = _pooling_mode(json.loads(cfg_path.read_text(encoding="utf-8")))
    st_cfg = source / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = int(json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length", max_len))
    else:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        max_len = min(max_len, int(config.get("max_position_embeddings", max_len)))
    return {"pooling": pooling, "normalize": normalize, "max_seq_length": max_len}


def _pooling_mode(cfg: dict[str, Any]) -> str:
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    return "mean"


def convert(source: Path, out: Path, plan: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Write model.onnx (+ tokenizer and pooling files) into ``out``; return manifest fields."""
    from optimum.exporters.onnx import main_export

    work = out / ".work"
    work.mkdir()
    progress("export", "exporting to ONNX with optimum-onnx (fp32)")
    main_export(
        str(source),
        output=str(work / "fp32"),
        task=OPTIMUM_TASKS[plan["task"]],
        library_name="transformers",
        do_validation=False,
        device="cpu",
    )
    fp32 = work / "fp32" / "model.onnx"
    failpoints.hit("convert.after_export")
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    if not (out / "tokenizer.json").is_file():
        raise ValueError("the model folder has no tokenizer.json (a fast tokenizer is required)")
    pooling = pooling_config(source)
    (out / "pooling.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
    fields = _guarded_quantize(source, fp32, out, plan, pooling, progress)
    shutil.rmtree(work)
    files = {"model": "model.onnx", "tokenizer": "tokenizer.json", **copy_license(source, out)}
    return {"files": files, "pooling": pooling, **fields}


def _guarded_quantize(
    source: Path, fp32: Path, out: Path, plan: dict[str, Any], pooling: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    """Quantize, check against fp32, and fall back to the next safer scheme while below the threshold."""
    from converters.onnx_schemes import FALLBACK, SCHEMES

    params = {**plan.get("params", {}), "task": plan["task"]}
    threshold = float(params.get("min_quality", 0.0))
    scheme: str | None = plan["quantization"]
    attempts: list[dict[str, Any]] = []
    while scheme is not None:
        progress("quantize", f"quantizing: {scheme}{SEARCH_NOTE if _searches(scheme, params) else ''}")
        how, extra = SCHEMES[scheme](fp32, out / "model.onnx", params, source, lambda m: progress("quantize", m))
        progress("verify", f"{scheme}: comparing with fp32 on {len(PROBES)} probe sentences")
        quality = compare(fp32, out / "model.onnx", out, plan["task"])
        attempts.append({"scheme": scheme, "method": how, "quality": quality, **extra})
        if quality["score"] >= threshold or FALLBACK[scheme] is None:
            break
        nxt = FALLBACK[scheme]
        progress(
            "verify", f"{scheme}: {quality['score_name']} {quality['score']:.4f} < {threshold}: falling back to {nxt}"
        )
        scheme = nxt
    final = attempts[-1]
    return {
        "quantization": final["scheme"],
        "quantization_method": final["method"],
        "quality": final["quality"],
        "quality_threshold": threshold,
        "fallbacks": attempts[:-1],
        **{k: v for k, v in final.items() if k not in ("scheme", "method", "quality")},
    }


SEARCH_NOTE = " (then the MatMuls to keep fp32 are chosen by measured sensitivity: about half a minute, once a model)"


def _searches(scheme: str, params: dict[str, Any]) -> bool:
    return scheme == "int8-dynamic" and params["task"] == "embeddings" and bool(params.get("fp32_by_sensitivity"))


def compare(reference: Path, candidate: Path, artifact: Path, task: str) -> dict[str, Any]:
    """Quality of candidate vs the fp32 reference on fixed probes; ``score`` is what the guard checks."""
    if task == "classification":
        return _compare_classification(reference, candidate, artifact)
    if task == "fill-mask":
        return _compare_fill_mask(reference, candidate, artifact)
    if task == "rerank":
        return _compare_rerank(reference, candidate, artifact)
    return _compare_embeddings(reference, candidate, artifact)


def _compare_embeddings(reference: Path, candidate: Path, artifact: Path) -> dict[str, Any]:
    import numpy as np

    from runtimes.onnx_embed import OnnxEmbedder

    a, _ = OnnxEmbedder.load(artifact, model_file=reference, threads=1).embed(list(PROBES))
    b, _ = OnnxEmbedder.load(artifact, model_file=candidate, threads=1).embed(list(PROBES))
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    lo = round(float(cos.min()), 6)
    return {
        "metric": "cosine_vs_fp32_onnx",
        "probes": len(PROBES),
        "min": lo,
        "mean": round(float(cos.mean()), 6),
        "score": lo,
        "score_name": "min cosine",
    }


def _compare_classification(reference: Path, candidate: Path, artifact: Path) -> dict[str, Any]:
    import numpy as np

    from runtimes.onnx_tasks import OnnxClassifier

    a, _ = OnnxClassifier.load(artifact, model_file=reference, threads=1).probabilities(list(PROBES))
    b, _ = OnnxClassifier.load(artifact, model_file=candidate, threads=1).probabilities(list(PROBES))
    agree = round(float((a.argmax(1) == b.argmax(1)).mean()), 6)
    return {
        "metric": "label_agreement_vs_fp32_onnx",
        "probes": len(PROBES),
        "agreement": agree,
        "max_probability_delta": round(float(np.abs(a - b).max()), 6),
        "score": agree,
        "score_name": "label agreement",
    }


RERANK_PROBES = (  # (query, documents): the guard's ranking probes
    (
        "How do I reset my password?",
        (
            "Open Settings, choose Account and press Reset password.",
            "Our office is closed on public holidays.",
            "Passwords must be at least twelve characters long.",
            "The cafeteria serves lunch from noon.",
            "If you forgot your password, use the link on the login page.",
        ),
    ),
    (
        "What causes thermal throttling on a Raspberry Pi?",
        (
            "When the SoC passes 80 C, the firmware lowers the clock to cool down.",
            "The Raspberry Pi Foundation is a charity in Cambridge.",
            "A heatsink and a fan keep the CPU below its throttling point.",
            "Bananas are rich in potassium.",
            "Undervoltage also makes the firmware reduce the clock speed.",
        ),
    ),
    (
        "best pasta recipe",
        (
            "Boil spaghetti, toss with garlic, olive oil and chili.",
            "The stock market closed higher today.",
            "Fresh egg pasta needs flour, eggs and a little salt.",
            "Trains to Milan leave every hour.",
        ),
    ),
)


def _compare_rerank(reference: Path, candidate: Path, artifact: Path) -> dict[str, Any]:
    """Pairwise ranking agreement: of the document pairs per probe query, the share both models order alike
    (the worst query counts); and the largest score difference."""
    import itertools

    import numpy as np

    from runtimes.onnx_tasks import OnnxReranker

    ref = OnnxReranker.load(artifact, model_file=reference, threads=1)
    cand = OnnxReranker.load(artifact, model_file=candidate, threads=1)
    agreements, deltas = [], []
    for query, docs in RERANK_PROBES:
        a, _ = ref.rerank(query, list(docs))
        b, _ = cand.rerank(query, list(docs))
        pairs = list(itertools.combinations(range(len(docs)), 2))
        same = [np.sign(a[i] - a[j]) == np.sign(b[i] - b[j]) for i, j in pairs]
        agreements.append(float(np.mean(same)))
        deltas.append(float(np.max(np.abs(np.array(a) - np.array(b)))))
    worst = round(min(agreements), 6)
    return {
        "metric": "pairwise_ranking_agreement_vs_fp32_onnx",
        "probes": len(RERANK_PROBES),
        "agreement": worst,
        "mean_agreement": round(float(np.mean(agreements)), 6),
        "max_score_delta": round(max(deltas), 6),
        "score": worst,
        "score_name": "pairwise ranking agreement",
    }


def _compare_fill_mask(reference: Path, candidate: Path, artifact: Path) -> dict[str, Any]:
    import numpy as np

    from runtimes.onnx_tasks import OnnxFillMask

    ref = OnnxFillMask.load(artifact, model_file=reference, threads=1)
    probes = [p.replace("[MASK]", ref.mask_token) for p in MASKED_PROBES]
    a, _ = ref.mask_logits(probes)
    b, _ = OnnxFillMask.load(artifact, model_file=candidate, threads=1).mask_logits(probes)
    agree = round(float(np.mean([x.argmax() == y.argmax() for x, y in zip(a, b, strict=True)])), 6)
    return {
        "metric": "top1_mask_agreement_vs_fp32_onnx",
        "probes": len(probes),
        "agreement": agree,
        "score": agree,
        "score_name": "top-1 agreement",
    }
