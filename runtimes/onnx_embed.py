"""Sentence embeddings on onnxruntime with a `tokenizers` tokenizer (no torch, no transformers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class OnnxEmbedder:
    def __init__(self, session: Any, tokenizer: Any, pooling: dict[str, Any], model_file: Path) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.model_file = model_file
        self.input_names = {i.name for i in session.get_inputs()}
        self.dimension = int(session.get_outputs()[0].shape[-1])

    @classmethod
    def load(cls, artifact: Path, *, model_file: Path | None = None, threads: int = 0) -> OnnxEmbedder:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        pooling = json.loads((artifact / "pooling.json").read_text(encoding="utf-8"))
        tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
        tok.enable_truncation(max_length=int(pooling["max_seq_length"]))
        pad_id, pad_token = _pad_token(artifact, tok)
        tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = model_file or artifact / "model.onnx"
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return cls(session, tok, pooling, path)

    def info(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "max_seq_length": self.pooling["max_seq_length"],
            "pooling": self.pooling["pooling"],
            "normalize": self.pooling["normalize"],
        }

    def count_tokens(self, texts: list[str]) -> list[int]:
        self.tokenizer.no_truncation()
        try:
            return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]
        finally:
            self.tokenizer.enable_truncation(max_length=int(self.pooling["max_seq_length"]))

    def run(self, texts: list[str]) -> tuple[Any, Any, list[Any]]:
        """(first output, attention mask, encodings) for a batch of texts."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return self.session.run(None, feeds)[0], mask, encodings

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        import numpy as np

        hidden, mask, _ = self.run(texts)
        pooled = _pool(hidden, mask, self.pooling["pooling"])
        if self.pooling["normalize"]:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return pooled.astype(np.float32), int(mask.sum())


def _pool(hidden: Any, mask: Any, mode: str) -> Any:
    import numpy as np

    if mode == "cls":
        return hidden[:, 0]
    m = mask[..., None].astype(hidden.dtype)
    if mode == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    return (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def _pad_token(artifact: Path, tok: Any) -> tuple[int, str]:
    cfg_path = artifact / "tokenizer_config.json"
    token = "[PAD]"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        token = cfg.get("pad_token") if isinstance(cfg.get("pad_token"), str) else token
    pad_id = tok.token_to_id(token)
    return (pad_id if pad_id is not None else 0), token
