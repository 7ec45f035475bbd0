"""Continuous batching on one llama.cpp context: N slots, one decode step for all of them.

One engine thread owns the context. Jobs wait in arrival order; a free slot takes the next one, keeping the longest
prefix of its prompt that the slot still holds in the KV cache (a chat's next turn does not re-read its history).
Each step puts one token per generating slot, plus a share of the slots' pending prompt tokens, into one batch,
decodes it, and samples each slot with its own llama.cpp sampler chain (the logits never leave C); a slot whose
sampling takes more than its share of the thread's time sits out steps while others generate (SampleBudget).
Text reaches the job's ``emit`` callback from the engine thread; the last item carries the finish reason (or is an
exception).

The KV cache is one buffer of ``n_ctx`` cells shared by all slots (llama.cpp's unified cache): memory is what was
asked for, not ``n_ctx`` per slot. When it fills, idle slots' cached prefixes go first; if that is not enough,
the slot holding the most cells ends with ``finish_reason="length"``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtimes.llama_sampling import Chunk, Sampling, build_sampler
from runtimes.llama_text import TextStream
from runtimes.sample_budget import SampleBudget

log = logging.getLogger(__name__)
Emit = Callable[["Chunk | BaseException"], None]


class EngineClosed(RuntimeError):
    pass


@dataclass
class Job:
    prompt: list[int]
    sampling: Sampling
    emit: Emit
    gone: Callable[[], bool] = lambda: False  # polled once a step: a client that left frees its slot
    cache_prompt: bool = True
    cancelled: bool = False
    reused_tokens: int = 0  # prompt tokens found in the KV cache (set when a slot takes the job)


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds, in order
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to decode
    next_token: int = -1  # sampled, not yet decoded
    sampler: Any = None
    text: TextStream | None = None
    generated: int = 0
    out_index: int = -1  # where this slot's logits are in the current batch
    last_used: float = 0.0
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # entries not yet sent with a chunk


class LlamaEngine:
    def __init__(self, model: Any, *, n_ctx: int, n_parallel: int, threads: int, n_batch: int = 512) -> None:
        from runtimes.llama_native import bindings

        self._lc = lc = bindings()
        self._vocab = lc.llama_model_get_vocab(model)
        self._n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max = n_parallel
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_AUTO
        params.kv_unified = True
        self._ctx = lc.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {n_ctx} tokens for {n_parallel} slots")
        self._mem = lc.llama_get_memory(self._ctx)
        self.n_ctx = int(lc.llama_n_ctx(self._ctx))
        self.n_batch = n_batch
        self._batch = lc.llama_batch_init(max(n_batch, n_parallel), 0, 1)
        self.slots = [_Slot(i) for i in range(n_parallel)]
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._piece = ctypes.create_string_buffer(256)
        self.prompt_tokens_reused = 0
        self.prompt_tokens_decoded = 0
        self._budget = SampleBudget()
        self._shared = False  # whether the step being run holds more than one slot's work
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()

    # -- the owner's side (any thread) ----------------------------------------------------------

    def submit(self, job: Job) -> Job:
        with self._cv:
            if self._closed:
                raise EngineClosed("the model is shutting down")
            self._queue.append(job)
            self._cv.notify()
        return job

    def cancel(self, job: Job) -> None:
        with self._cv:
            job.cancelled = True
            self._cv.notify()

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self.slots if s.job is not None)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=60)
        if not self._thread.is_alive():
            self._lc.llama_batch_free(self._batch)
            self._lc.llama_free(self._ctx)

    # -- the engine thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._queue and self.busy_slots == 0:
                    self._cv.wait()
                if self._closed:
                    break
            try:
                with self._cv:
                    self._admit()
                self._step()
            except Exception as e:  # noqa: BLE001 - a native failure ends the jobs in flight, not the worker
                log.exception("decode step failed")
                for slot in self.slots:
                    if slot.job is not None:
                        self._release(slot, e)
        for slot in self.slots:
            if slot.job is not None:
                self._release(slot, EngineClosed("the model is shutting down"))
        for job in self._queue:
            job.emit(EngineClosed("the model is shutting down"))

    def _admit(self) -> None:
        while self._queue:
            job = self._queue[0]
            if job.cancelled:
                self._queue.popleft()
                job.emit(Chunk("", "stop"))
                continue
            free = [s for s in self.slots if s.job is None]
            if not free:
                return
            self._queue.popleft()
            try:
                self._assign(self._pick(free, job), job)
            except Exception as e:  # noqa: BLE001 - this job's settings failed; the engine goes on
                log.exception("could not start a generation")
                job.emit(e)

    def _pick(self, free: list[_Slot], job: Job) -> _Slot:
        """The free slot that holds the longest prefix of the prompt; else the one unused the longest."""
        if job.cache_prompt:
            best = max(free, key=lambda s: (_common_prefix(s.cached, job.prompt), -s.last_used))
            if _common_prefix(best.cached, job.prompt) > 0:
                return best
        return min(free, key=lambda s: s.last_used)

    def _assign(self, slot: _Slot, job: Job) -> None:
        sampler = build_sampler(self._lc, self._vocab, job.sampling, job.prompt)  # first: it may refuse
        keep = _common_prefix(slot.cached, job.prompt) if job.cache_prompt else 0
        keep = min(keep, len(job.prompt) - 1)  # the last prompt token is decoded again: its logits start sampling
        self._lc.llama_memory_seq_rm(self._mem, slot.seq, keep, -1)
        slot.cached = job.prompt[:keep]
        slot.pending = job.prompt[keep:]
        slot.job, slot.next_token, slot.generated = job, -1, 0
        slot.sampler = sampler
        slot.text = TextStream(job.sampling.stop)
        job.reused_tokens = keep
        self.prompt_tokens_reused += keep
        self._budget.start(slot.seq)

    def _step(self) -> None:
        for slot in self.slots:
            if slot.job is not None and (slot.job.cancelled or slot.job.gone()):
                self._release(slot, Chunk("", "stop"))
        plan = self._plan()
        if not plan:
            return
        t0 = time.perf_counter()
        rc = self._lc.llama_decode(self._ctx, self._fill(plan))
        if rc == 1:  # no room in the KV cache for this batch: nothing was decoded
            self._make_room()
            return
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        for slot, tokens, wants_logits in plan:
            slot.cached += tokens
            if slot.pending:
                slot.pending = slot.pending[len(tokens) :]
                self.prompt_tokens_decoded += len(tokens)
            if wants_logits:
                t = time.perf_counter()
                token = slot.sampler.sample(self._ctx, slot.out_index)
                self._budget.spend(slot.seq, time.perf_counter() - t, shared=self._shared)
                self._on_token(slot, token)
        self._budget.earn([s.seq for s in self.slots if s.job is not None], time.perf_counter() - t0)

    def _plan(self) -> list[tuple[_Slot, list[int], bool]]:
        """(slot, tokens to decode for it, whether it samples after this step): generating slots first, then
        prompt chunks while the batch has room. Nothing changes until the decode succeeds."""
        plan: list[tuple[_Slot, list[int], bool]] = []
        budget = self.n_batch
        generating = [s.seq for s in self.slots if s.job is not None and not s.pending and s.next_token >= 0]
        prefilling = any(s.job is not None and s.pending for s in self.slots)
        ready, self._shared = self._budget.plan(generating, prefilling)
        for seq in ready:
            slot = self.slots[seq]
            plan.append((slot, [slot.next_token], True))
            budget -= 1
        for slot in self.slots:
            if slot.job is not None and slot.pending and budget > 0:
                chunk = slot.pending[:budget]
                plan.append((slot, chunk, len(chunk) == len(slot.pending)))
                budget -= len(chunk)
        return plan

    def _fill(self, plan: list[tuple[_Slot, list[int], bool]]) -> Any:
        b = self._batch
        n = 0
        for slot, tokens, wants_logits in plan:
            pos = len(slot.cached)
            for k, token in enumerate(tokens):
                b.token[n], b.pos[n], b.n_seq_id[n] = token, pos + k, 1
                b.seq_id[n][0] = slot.seq
                b.logits[n] = 0
                n += 1
            if wants_logits:
                b.logits[n - 1] = 1
                slot.out_index = n - 1
        b.n_tokens = n
        return b

    def _make_room(self) -> None:
        """Drop idle slots' cached prefixes; when none is left, end the slot that holds the most cells."""
        idle = [s for s in self.slots if s.job is None and s.cached]
        if idle:
            for slot in idle:
                self._lc.llama_memory_seq_rm(self._mem, slot.seq, 0, -1)
                slot.cached = []
            log.info("KV cache full: dropped %d cached prefixes", len(idle))
        else:
            biggest = max((s for s in self.slots if s.job is not None), key=lambda s: len(s.cached))
            log.warning("KV cache full: ending slot %d at %d tokens", biggest.seq, len(biggest.cached))
            self._release(biggest, None, "length")

    def _on_token(self, slot: _Slot, token: int) -> None:
        job, text_stream = slot.job, slot.text
        if job is None or text_stream is None:
            return
        if self._lc.llama_vocab_is_eog(self._vocab, token):
            self._release(slot, None, "stop")
            return
        if job.sampling.logprobs is not None:
            slot.logprobs.append(self._logprobs(slot.out_index, token, job.sampling.logprobs))
        slot.generated += 1
        text = text_stream.add(self._token_bytes(token))
        if text_stream.stopped:
            self._release(slot, None, "stop", text)
            return
        limit = job.sampling.max_tokens
        if (limit and slot.generated >= limit) or len(slot.cached) + 1 >= self.n_ctx:
            self._release(slot, None, "length", text)
            return
        if text:
            job.emit(Chunk(text, logprobs=self._take_logprobs(slot)))
        slot.next_token = token

    def _logprobs(self, index: int, token: int, top: int) -> dict[str, Any]:
        """The sampled token's log-probability under the model's distribution (before temperature and the
        sampler's cuts, as OpenAI reports it) and the ``top`` likeliest tokens'. Only a request that asks pays."""
        import numpy as np

        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(self._ctx, index), shape=(self._n_vocab,))
        peak = float(logits.max())
        norm = peak + float(np.log(np.exp(logits - peak).sum()))
        entry = self._token_entry(token, float(logits[token]) - norm)
        best = np.argpartition(-logits, top)[:top] if top else np.empty(0, dtype=np.int64)
        best = best[np.argsort(-logits[best], kind="stable")]
        entry["top_logprobs"] = [self._token_entry(int(t), float(logits[t]) - norm) for t in best]
        return entry

    def _token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        raw = self._token_bytes(token)
        return {"token": raw.decode("utf-8", errors="replace"), "bytes": list(raw), "logprob": logprob}

    @staticmethod
    def _take_logprobs(slot: _Slot) -> list[dict[str, Any]] | None:
        if slot.job is None or slot.job.sampling.logprobs is None:
            return None
        out, slot.logprobs = slot.logprobs, []
        return out

    def _token_bytes(self, token: int) -> bytes:
        n = self._lc.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = self._lc.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    def _release(self, slot: _Slot, error: BaseException | Chunk | None, reason: str = "stop", text: str = "") -> None:
        """End the slot's job: its last text and finish reason (or an error) go out; the KV stays for reuse."""
        job = slot.job
        if slot.sampler is not None:
            slot.sampler.free()
        text += slot.text.flush() if slot.text is not None and error is None else ""
        logprobs = self._take_logprobs(slot)
        slot.logprobs = []
        slot.job, slot.sampler, slot.text, slot.next_token = None, None, None, -1
        slot.pending = []  # a prompt cut short keeps the KV of what was decoded (``cached``)
        slot.last_used = time.monotonic()
        if job is not None:
            job.emit(error if error is not None else Chunk(text, reason, logprobs))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
