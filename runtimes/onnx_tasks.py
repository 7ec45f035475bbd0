"""Text classification and fill-mask on onnxruntime, sharing the embedder's tokenizer and session setup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from runtimes.onnx_embed import OnnxEmbedder
from tursi.core.errors import InvalidRequest


def _softmax(x: Any) -> Any:
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class OnnxClassifier(OnnxEmbedder):
    labels: dict[int, str]
    multi_label: bool

    @classmethod
    def load(cls, artifact: Path, *, model_file: Path | None = None, threads: int = 0) -> Self:
        model = super().load(artifact, model_file=model_file, threads=threads)
        config = json.loads((artifact / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        model.labels = {int(k): str(v) for k, v in id2label.items()}
        model.multi_label = config.get("problem_type") == "multi_label_classification"
        return model

    def probabilities(self, texts: list[str]) -> tuple[Any, int]:
        import numpy as np

        logits, mask, _ = self.run(texts)
        probs = 1 / (1 + np.exp(-logits)) if self.multi_label else _softmax(logits)
        return probs, int(mask.sum())

    def classify(self, texts: list[str], top_k: int | None) -> tuple[list[list[dict[str, Any]]], int]:
        probs, tokens = self.probabilities(texts)
        out = []
        for row in probs:
            order = row.argsort()[::-1][: top_k or len(row)]
            out.append([{"label": self.labels.get(int(i), f"LABEL_{int(i)}"), "score": float(row[i])} for i in order])
        return out, tokens


class OnnxReranker(OnnxEmbedder):
    """A cross-encoder (one logit per query-document pair); the score is its sigmoid, as sentence-transformers'
    CrossEncoder reports a one-label model's."""

    def pair_logits(self, query: str, documents: list[str]) -> tuple[Any, int]:
        import numpy as np

        encodings = self.encode([(query, d) for d in documents])  # type: ignore[misc]  # tokenizers takes pairs
        logits, mask = self._forward(encodings)
        return np.asarray(logits).reshape(len(documents), -1)[:, 0], int(mask.sum())

    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        import numpy as np

        logits, tokens = self.pair_logits(query, documents)
        return [float(x) for x in 1 / (1 + np.exp(-logits))], tokens


class OnnxFillMask(OnnxEmbedder):
    mask_token: str
    mask_id: int

    @classmethod
    def load(cls, artifact: Path, *, model_file: Path | None = None, threads: int = 0) -> Self:
        model = super().load(artifact, model_file=model_file, threads=threads)
        cfg_path = artifact / "tokenizer_config.json"
        cfg: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        found = cfg.get("mask_token")
        token = found if isinstance(found, str) else "[MASK]"
        mask_id = model.tokenizer.token_to_id(token)
        if mask_id is None:
            raise ValueError(f"the tokenizer has no mask token {token!r}")
        model.mask_token, model.mask_id = token, int(mask_id)
        return model

    def mask_logits(self, texts: list[str]) -> tuple[list[Any], int]:
        """Logits at each text's first mask position."""
        import numpy as np

        logits, mask, encodings = self.run(texts)
        rows = []
        for i, enc in enumerate(encodings):
            positions = [j for j, t in enumerate(enc.ids) if t == self.mask_id]
            if not positions:  # the route checked the text: the mask is past the tokens the model reads
                raise InvalidRequest(
                    f"input {i} has no {self.mask_token} token within the first "
                    f"{self.pooling['max_seq_length']} tokens the model reads",
                    param="input",
                )
            rows.append(np.asarray(logits[i, positions[0]]))
        return rows, int(mask.sum())

    def fill_mask(self, texts: list[str], top_k: int | None) -> tuple[list[list[dict[str, Any]]], int]:
        rows, tokens = self.mask_logits(texts)
        out = []
        for text, row in zip(texts, rows, strict=True):
            probs = _softmax(row)
            best = probs.argsort()[::-1][:top_k]
            preds = []
            for tid in best:
                word = self.tokenizer.decode([int(tid)]).strip()
                preds.append(
                    {
                        "token": word,
                        "token_id": int(tid),
                        "score": float(probs[tid]),
                        "sequence": text.replace(self.mask_token, word, 1),
                    }
                )
            out.append(preds)
        return out, tokens
