"""Which MatMuls of a dynamic-int8 encoder stay fp32, chosen by measured sensitivity (embeddings).

1. Quantize every node (``quantize_dynamic``) and build the switchable emulator (``int8_emulator``).
2. Scan: for each MatMul, the calibration quality with everything int8 except that node (its *gain* is the
   drop in mean cosine error it causes). Embedding Gathers are measured too, for the record, but stay int8.
3. Greedy: while the calibration quality is below the targets, keep in fp32 the candidate that buys the most
   quality per multiply-add (re-measured with the nodes kept so far; the few best by scan gain per multiply-add
   are tried each step), within a budget of multiply-adds kept fp32 and a time cap.

No pass gives kept nodes back to int8 once the targets hold: tried on MiniLM, removals that kept (or even
improved) the calibration figures cost the held-out sentences their margin (min .988 -> .980 and .982): one
text's cosine moves by up to ~0.01 when a single int8 rounding step flips, so figures at the targets' edge are
noise, and the targets sit above the goal (held-out min .98 / mean .995) to leave room for it.

Quality is the cosine between each text's pooled embedding and fp32's, one text per call (no batch-mates: a
dynamic int8 tensor range spans the whole batch, so batching would make the figures depend on the batching).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters import int8_emulator


@dataclass(frozen=True)
class Targets:
    min_cosine: float = 0.98
    mean_cosine: float = 0.996
    max_fp32_share: float = 0.25  # of the quantizable MatMuls' multiply-adds: what speed the int8 model keeps
    # a safety net for big models, not a budget: MiniLM's search takes ~20-40 s on 2 cores (about 80 model runs
    # over the calibration texts); a cut search depends on the machine's load, and the manifest says it was cut
    max_seconds: float = 180.0
    tries_per_step: int = 6


@dataclass(frozen=True)
class Quality:
    min: float
    mean: float

    def error(self) -> float:
        return 1.0 - self.mean

    def meets(self, t: Targets) -> bool:
        return self.min >= t.min_cosine and self.mean >= t.mean_cosine

    def as_dict(self) -> dict[str, float]:
        return {"min": round(self.min, 5), "mean": round(self.mean, 6)}


class Emulated:
    """Calibration quality of any subset of nodes in int8, from one emulator session."""

    def __init__(self, fp32: Path, int8: Path, artifact: Path, texts: list[str], threads: int) -> None:
        import onnx
        import onnxruntime as ort

        fp32_model, int8_model = onnx.load(str(fp32)), onnx.load(str(int8))
        self.nodes = int8_emulator.quantized_nodes(fp32_model, int8_model)
        blob = int8_emulator.build(fp32_model, int8_model, self.nodes).SerializeToString()
        del fp32_model, int8_model
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one text per call is too small to split: calls run side by side instead
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the emulator's unused int8 copies are pruned with a warning each
        self.session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        self.threads = max(1, threads)
        self.feeds, self.pooling = feeds_for(artifact, texts, {i.name for i in self.session.get_inputs()})
        self.reference = self._vectors([False] * len(self.nodes))

    def quality(self, kept_fp32: set[str]) -> Quality:
        import numpy as np

        cos = (self.vectors(kept_fp32) * self.reference).sum(axis=1)
        return Quality(float(np.min(cos)), float(np.mean(cos)))

    def vectors(self, kept_fp32: set[str]) -> Any:
        """Unit-length embeddings of the texts with every node int8 except ``kept_fp32``."""
        return self._vectors([n.name not in kept_fp32 for n in self.nodes])

    def _vectors(self, switch: list[bool]) -> Any:
        import numpy as np

        flags = np.array(switch, dtype=bool)

        def one(feed: dict[str, Any]) -> Any:
            return pool_one(self.session.run(None, {**feed, int8_emulator.SWITCH: flags})[0][0], self.pooling)

        with ThreadPoolExecutor(self.threads) as pool:  # onnxruntime releases the GIL while it runs
            out = np.stack(list(pool.map(one, self.feeds)))
        return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)


def feeds_for(artifact: Path, texts: list[str], names: set[str]) -> tuple[list[dict[str, Any]], str]:
    """One feed per text (no padding) and the pooling mode, from the artifact's tokenizer and pooling.json."""
    import json

    import numpy as np
    from tokenizers import Tokenizer

    pooling = json.loads((artifact / "pooling.json").read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    tok.enable_truncation(max_length=int(pooling["max_seq_length"]))
    tok.no_padding()
    feeds = []
    for enc in tok.encode_batch(texts):
        feed = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        feeds.append({k: np.array([v], dtype=np.int64) for k, v in feed.items() if k in names})
    return feeds, str(pooling["pooling"])


def pool_one(hidden: Any, mode: str) -> Any:
    """Pool one unpadded text's token states [tokens, dim]."""
    if mode == "cls":
        return hidden[0]
    if mode == "max":
        return hidden.max(axis=0)
    return hidden.mean(axis=0)


Note = Callable[[str], None]


def choose(
    fp32: Path, int8: Path, artifact: Path, texts: list[str], threads: int, targets: Targets, note: Note
) -> dict[str, Any]:
    """Run the search for an all-int8 model ``int8`` quantized from ``fp32``; the manifest section."""
    return search(Emulated(fp32, int8, artifact, texts, threads), targets, note)


class _Every:
    """Calls ``note`` at most once per ``period`` seconds: progress events keep the client's stream alive."""

    def __init__(self, note: Note, clock: Callable[[], float], period: float = 3.0) -> None:
        self.note, self.clock, self.period = note, clock, period
        self.last = clock()

    def __call__(self, message: str) -> None:
        if self.clock() - self.last >= self.period:
            self.last = self.clock()
            self.note(message)


def search(
    emu: Emulated, targets: Targets, note: Note = lambda _: None, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """The nodes to keep fp32 and why: the manifest's ``int8_sensitivity`` section."""
    started = clock()
    total = sum(n.macs_per_token for n in emu.nodes) or 1
    share = {n.name: n.macs_per_token / total for n in emu.nodes}
    everything = emu.quality(set())
    tick = _Every(note, clock)
    scan = _scan(emu, lambda: clock() - started > targets.max_seconds, tick)
    greedy = _Greedy(everything, scan, share, targets)
    steps, stop = _greedy(emu, greedy, lambda: clock() - started, tick)
    kept = [step["node"] for step in steps]
    if len(scan) < len(emu.nodes):
        stop = f"scan cut by the {targets.max_seconds:g} s cap after {len(scan)} of {len(emu.nodes)} nodes; {stop}"
    return {
        "method": "all-int8 except one node at a time, then greedy by quality gained per multiply-add "
        "(emulated int8, one calibration text per call, cosine of the pooled embedding vs fp32)",
        "calibration_texts": len(emu.feeds),
        "targets": {"min": targets.min_cosine, "mean": targets.mean_cosine, "max_fp32_share": targets.max_fp32_share},
        "all_int8": everything.as_dict(),
        "chosen": steps[-1]["after"] if steps else everything.as_dict(),
        "nodes_to_exclude": kept,
        "steps": steps,
        "fp32_macs_share": round(sum(share[k] for k in kept), 4),
        "stopped": stop,
        "seconds": round(clock() - started, 1),
        "nodes": _table(emu, everything, scan, share),
    }


def _scan(emu: Emulated, over: Callable[[], bool], tick: Note) -> dict[str, Quality]:
    """Quality with every node int8 but one, for each node (as many as the time cap allows)."""
    scan: dict[str, Quality] = {}
    for node in emu.nodes:
        if over():
            break
        scan[node.name] = emu.quality({node.name})
        tick(f"int8 sensitivity: {len(scan)} of {len(emu.nodes)} nodes measured")
    return scan


def _table(emu: Emulated, everything: Quality, scan: dict[str, Quality], share: dict[str, float]) -> list[Any]:
    rows = [
        {
            "node": n.name,
            "op": n.op_type,
            "macs_share": round(share[n.name], 4),
            "without": scan[n.name].as_dict() if n.name in scan else None,
            "gain": round(scan[n.name].mean - everything.mean, 6) if n.name in scan else None,
        }
        for n in emu.nodes
    ]
    return sorted(rows, key=lambda r: -(r["gain"] if r["gain"] is not None else -1.0))


@dataclass(frozen=True)
class _Greedy:
    everything: Quality
    scan: dict[str, Quality]
    share: dict[str, float]
    targets: Targets

    def candidates(self, kept: list[str]) -> list[str]:
        """MatMuls whose exclusion helped in the scan and still fit the budget, best gain per multiply-add first."""
        room = self.targets.max_fp32_share + 1e-9 - sum(self.share[k] for k in kept)
        pool = [
            name
            for name, q in self.scan.items()
            if name not in kept and 0 < self.share[name] <= room and q.mean > self.everything.mean
        ]
        return sorted(pool, key=lambda name: -(self.scan[name].mean - self.everything.mean) / self.share[name])


def _greedy(emu: Emulated, g: _Greedy, elapsed: Callable[[], float], tick: Note) -> tuple[list[dict[str, Any]], str]:
    steps: list[dict[str, Any]] = []
    kept: list[str] = []
    current = g.everything
    while not current.meets(g.targets):
        if elapsed() > g.targets.max_seconds:
            return steps, "time cap reached before the targets"
        pool = g.candidates(kept)
        tried = {}
        for name in pool[: g.targets.tries_per_step]:
            tried[name] = emu.quality({*kept, name})
            tick(f"int8 sensitivity: {len(kept)} MatMuls kept fp32 so far, mean cosine {current.mean:.4f}")
        better = {name: q for name, q in tried.items() if q.error() < current.error()}
        if not better:
            if pool:
                return steps, "no remaining node improves the calibration quality"
            return steps, "budget of fp32 multiply-adds reached before the targets"
        best = max(better, key=lambda name: (current.error() - better[name].error()) / g.share[name])
        kept.append(best)
        current = better[best]
        steps.append({"node": best, "macs_share": round(g.share[best], 4), "after": current.as_dict()})
    return steps, "targets met"
