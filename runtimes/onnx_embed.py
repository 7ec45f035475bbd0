"""Sentence embeddings on onnxruntime with a `tokenizers` tokenizer (no torch, no transformers).

A batch of texts is cut into length groups (one session call each, padded to the group's longest text) chosen to
cost the least: padding against the fixed cost of a call. With several threads, the groups run side by side on
``lanes`` threads, each call on about one core, instead of one after another with every core on each call: a
small group cannot keep several cores busy, and between the short parallel sections of one call, threads spin or
sleep. The session's threads do not spin (two concurrent calls would fight their spinning); a batch that is one
text still gets every core on its one call.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Self

from tursi.core.errors import InvalidRequest

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CALL_COST_TOKENS = 8  # the fixed cost of one session call, in padded tokens (measured on MiniLM int8: 4 to 16)


class OnnxEmbedder:
    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        pooling: dict[str, Any],
        model_file: Path,
        pad_id: int = 0,
        lanes: int = 1,
    ) -> None:
        self.session = session
        self.pad_id = pad_id
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.model_file = model_file
        self.input_names = {i.name for i in session.get_inputs()}
        self.dimension = int(session.get_outputs()[0].shape[-1])
        self.lanes = max(1, lanes)
        self._lanes = ThreadPoolExecutor(self.lanes, thread_name_prefix="tursi-lane") if self.lanes > 1 else None

    @classmethod
    def load(cls, artifact: Path, *, model_file: Path | None = None, threads: int = 0) -> Self:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        pooling = json.loads((artifact / "pooling.json").read_text(encoding="utf-8"))
        tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
        tok.enable_truncation(max_length=int(pooling["max_seq_length"]))
        pad_id, _ = _pad_token(artifact, tok)
        tok.no_padding()  # batches are padded here, per length group
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 1:  # calls run side by side (lanes): spinning threads would steal each other's cores
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = model_file or artifact / "model.onnx"
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return cls(session, tok, pooling, path, pad_id, lanes=threads)

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
            return [len(e.ids) for e in self.encode(texts)]
        finally:
            self.tokenizer.enable_truncation(max_length=int(self.pooling["max_seq_length"]))

    def encode(self, texts: list[str]) -> list[Any]:
        """The tokenizer's encodings of ``texts``. A text it cannot take (a lone surrogate, which UTF-8 cannot
        carry) is the caller's InvalidRequest naming that text's index, never a crash of the whole call."""
        try:
            return self.tokenizer.encode_batch(texts)
        except Exception as batch_error:
            for i, text in enumerate(texts):
                found = _LONE_SURROGATE.search(text)
                if found is not None:
                    raise InvalidRequest(
                        f"input {i} has a lone surrogate (U+{ord(found.group()):04X} at character {found.start()}); "
                        "text must be valid Unicode",
                        param="input",
                    ) from None
                try:
                    self.tokenizer.encode(text)
                except Exception as e:  # noqa: BLE001 - whatever the tokenizer says, this text is what it refuses
                    raise InvalidRequest(f"input {i} cannot be tokenized: {e}", param="input") from None
            raise batch_error  # no text fails alone: not the input's fault

    def run(self, texts: list[str]) -> tuple[Any, Any, list[Any]]:
        """(first output, attention mask, encodings) for a batch of texts, padded to the longest."""
        encodings = self.encode(texts)
        out, mask = self._forward(encodings)
        return out, mask, encodings

    def _forward(self, encodings: list[Any]) -> tuple[Any, Any]:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = types
        return self.session.run(None, feeds)[0], mask

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        vectors, counts = self.embed_batch(texts)
        return vectors, sum(counts)

    def embed_batch(self, texts: list[Any], max_batch: int = 32) -> tuple[Any, list[int]]:
        """Vectors for many texts (float32 [n, dimension]) and each text's token count.

        ``texts`` are strings, or the encodings ``encode`` made of them (the worker tokenizes a request before it
        queues, to know its cost before the model runs). They run in length groups of at most ``max_batch``
        (``length_groups``), side by side on the lanes when there are several.
        """
        import numpy as np

        encodings = self.encode(texts) if texts and isinstance(texts[0], str) else texts
        counts = [len(e.ids) for e in encodings]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)

        def run(group: list[int]) -> None:
            hidden, mask = self._forward([encodings[i] for i in group])
            pooled = _pool(hidden, mask, self.pooling["pooling"])
            if self.pooling["normalize"]:
                norms = np.linalg.norm(pooled, axis=1, keepdims=True)
                pooled = pooled / np.clip(norms, 1e-12, None)
            out[group] = pooled

        self._on_lanes(run, lane_groups(length_groups(counts, max_batch), counts, self.lanes))
        return out, counts

    def _on_lanes(self, run: Any, groups: list[list[int]]) -> None:
        """``run`` for each group: on the lanes when there are several groups, else on this thread. Every group
        finishes before the first error, if any, is raised."""
        if self._lanes is None or len(groups) < 2:
            for group in groups:
                run(group)
            return
        futures: list[Future[None]] = [self._lanes.submit(run, group) for group in groups]
        wait(futures)
        for f in futures:
            f.result()


def length_groups(lengths: list[int], max_batch: int, call_cost: int = CALL_COST_TOKENS) -> list[list[int]]:
    """Indices sorted by length, cut into groups of at most ``max_batch`` that cost the least in all, a group
    costing its padded tokens (size x longest) plus ``call_cost`` (exact: dynamic programming over the sorted
    lengths, O(n x max_batch))."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0] + [0] * len(order)  # best[j]: least cost of the first j texts
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        width = lengths[order[j - 1]]
        best[j], cut[j] = min((best[i] + call_cost + (j - i) * width, i) for i in range(max(0, j - max_batch), j))
    groups: list[list[int]] = []
    j = len(order)
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def lane_groups(groups: list[list[int]], lengths: list[int], lanes: int) -> list[list[int]]:
    """``groups`` (each sorted by length) for ``lanes`` threads, costliest first: a group that costs more than a
    lane's share is halved (each half padded to its own longest), so one long group does not leave lanes idle."""
    if lanes < 2:
        return groups

    def cost(g: list[int]) -> int:
        return len(g) * lengths[g[-1]]

    out = sorted(groups, key=cost, reverse=True)
    share = sum(cost(g) for g in out) / lanes
    for _ in range(4 * lanes):
        if len(out[0]) < 2 or cost(out[0]) <= share:
            break
        big = out.pop(0)
        out = sorted([*out, big[: len(big) // 2], big[len(big) // 2 :]], key=cost, reverse=True)
    return out


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
