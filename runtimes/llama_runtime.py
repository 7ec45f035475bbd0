"""Chat, completions and embeddings on llama.cpp through llama-cpp-python.

Chat and completions run on a ``LlamaEngine`` (runtimes/llama_engine.py): one context, N slots decoded together.
Prompts are rendered and tokenized here, in the caller's thread; an embeddings deployment uses llama-cpp-python's
``Llama`` as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runtimes.chat_template import UNTRUSTED_FIELDS, ChatTemplate
from runtimes.cpu_check import check_llama_build
from runtimes.llama_engine import Emit, Job, LlamaEngine
from runtimes.llama_sampling import Chunk, Sampling

log = logging.getLogger(__name__)


class ControlText(ValueError):
    """Client text that would become control tokens, where the template does not let it be kept as plain text."""

    def __init__(self, field: str) -> None:
        super().__init__(
            f"'{field}' contains the text of a control token, which this model's chat template "
            "cannot keep apart from its own"
        )
        self.field = field


class ContextLengthExceeded(Exception):
    def __init__(self, prompt_tokens: int, max_tokens: int | None, n_ctx: int) -> None:
        want = f"{prompt_tokens} prompt tokens" + (f" + {max_tokens} max_tokens" if max_tokens else "")
        super().__init__(f"{want} exceed the context of {n_ctx} tokens")
        self.prompt_tokens, self.max_tokens, self.n_ctx = prompt_tokens, max_tokens, n_ctx


class LlamaRuntime:
    def __init__(
        self,
        model: Any,
        meta: dict[str, str],
        template: ChatTemplate | None,
        *,
        model_file: Path,
        n_ctx: int,
        threads: int,
        engine: LlamaEngine | None = None,
        llm: Any = None,
    ) -> None:
        self.model = model  # tokenizer and metadata (llama_native.Vocab, or the Llama's own model)
        self.meta = meta
        self.template = template
        self.model_file = model_file
        self.engine = engine  # chat and completions
        self.llm = llm  # embeddings: a whole ``Llama``
        self.embedding = llm is not None
        self.threads = threads
        # llama.cpp may round its context up; the Python side's limits follow what was asked
        self.n_ctx = min(engine.n_ctx if engine else int(llm.n_ctx()), n_ctx)

    @classmethod
    def load(cls, model_file: Path, *, threads: int, n_ctx: int, embedding: bool, parallel: int = 1) -> LlamaRuntime:
        check_llama_build()
        if embedding:
            from llama_cpp import Llama

            llm = Llama(
                model_path=str(model_file),
                n_ctx=n_ctx,
                n_threads=threads or None,
                n_threads_batch=threads or None,
                embedding=True,
                verbose=False,
            )
            return cls(llm._model, llm.metadata, None, model_file=model_file, n_ctx=n_ctx, threads=threads, llm=llm)
        from runtimes.llama_native import Vocab, bindings, quiet_logs

        lc = bindings()
        quiet_logs(lc)
        native = lc.llama_model_load_from_file(str(model_file).encode("utf-8"), lc.llama_model_default_params())
        if not native:
            raise ValueError(f"llama.cpp could not load {model_file.name}")
        model = Vocab(lc, native)
        meta = model.metadata()
        bos, eos = _token_text(model, model.token_bos()), _token_text(model, model.token_eos())
        template = ChatTemplate.load(meta.get("tokenizer.chat_template"), bos, eos)
        engine = LlamaEngine(native, n_ctx=n_ctx, n_parallel=max(1, parallel), threads=threads or _cores())
        return cls(model, meta, template, model_file=model_file, n_ctx=n_ctx, threads=threads, engine=engine)

    def info(self) -> dict[str, Any]:
        md = self.meta
        return {
            "n_ctx": self.n_ctx,
            "architecture": md.get("general.architecture"),
            "n_ctx_train": int(md.get(f"{md.get('general.architecture')}.context_length", 0) or 0),
            "chat_template": "model" if self.template and self.template.from_model else "chatml-fallback",
            "embedding": self.embedding,
            "n_threads": self.threads or _cores(),
            "parallel": len(self.engine.slots) if self.engine else 1,
        }

    # -- prompts -----------------------------------------------------------------------------

    def _add_bos(self, text: str) -> bool:
        add_bos = self.meta.get("tokenizer.ggml.add_bos_token", "true") != "false"
        bos_text = self.template.bos_token if self.template else ""
        return add_bos and not (bos_text and text.startswith(bos_text))  # else the template wrote it already

    def tokenize_prompt(self, text: str) -> list[int]:
        """A raw completion prompt: the client writes the whole text, control tokens included."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=self._add_bos(text), special=True))

    @property
    def tool_format(self) -> str | None:
        return self.template.tool_format if self.template is not None else None

    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The template's own text may hold control tokens; the client's text (content, name) never does. Tools
        and earlier calls, rendered by the template itself, may not hold control-token text at all."""
        if self.template is None:
            raise ValueError("this model has no chat template")
        if tools:
            self._refuse_control_text_in(tools, "tools")
        for i, msg in enumerate(messages):
            if msg.get("tool_calls"):
                self._refuse_control_text_in(msg["tool_calls"], f"messages[{i}].tool_calls")
        text, pieces = self.template.render_pieces(messages, tools)
        if pieces is None:  # the template reshapes the client's text: refuse text that would turn into control
            self._refuse_control_text(messages)
            return self.tokenize_prompt(text)
        tokens = [t for t in self.model.tokenize(b"", add_bos=self._add_bos(text), special=False) if t == self.bos_id]
        for piece, field in pieces:
            tokens += self.model.tokenize(piece.encode("utf-8"), add_bos=False, special=field is None)
        return tokens

    def _refuse_control_text_in(self, value: Any, field: str) -> None:
        """Every string inside ``value`` (keys included) must tokenize the same with and without special tokens."""
        if isinstance(value, dict):
            for k, v in value.items():
                self._refuse_control_text_in(k, field)
                self._refuse_control_text_in(v, field)
        elif isinstance(value, list):
            for v in value:
                self._refuse_control_text_in(v, field)
        elif isinstance(value, str) and value:
            data = value.encode("utf-8")
            if self.model.tokenize(data, add_bos=False, special=True) != self.model.tokenize(
                data, add_bos=False, special=False
            ):
                raise ControlText(field)

    def _refuse_control_text(self, messages: list[dict[str, Any]]) -> None:
        for i, msg in enumerate(messages):
            for key in UNTRUSTED_FIELDS:
                value = msg.get(key)
                if isinstance(value, str) and value:
                    data = value.encode("utf-8")
                    if self.model.tokenize(data, add_bos=False, special=True) != self.model.tokenize(
                        data, add_bos=False, special=False
                    ):
                        raise ControlText(f"messages[{i}].{key}")

    @property
    def bos_id(self) -> int:
        return int(self.model.token_bos())

    def check_context(self, prompt: list[int], max_tokens: int | None) -> None:
        if len(prompt) >= self.n_ctx or (max_tokens and len(prompt) + max_tokens > self.n_ctx):
            raise ContextLengthExceeded(len(prompt), max_tokens, self.n_ctx)

    # -- generation --------------------------------------------------------------------------

    def submit(self, prompt: list[int], sampling: Sampling, emit: Emit, **options: Any) -> Job:
        """Queue a generation; ``emit`` receives its chunks from the engine thread (``Job`` has the options)."""
        if self.engine is None:
            raise ValueError("this model was loaded for embeddings")
        self.check_context(prompt, sampling.max_tokens)
        return self.engine.submit(Job(prompt, sampling, emit, **options))

    def cancel(self, job: Job) -> None:
        if self.engine is not None:
            self.engine.cancel(job)

    def slots(self) -> dict[str, int]:
        """Slot occupancy and prompt-cache figures for /metrics."""
        e = self.engine
        if e is None:
            return {}
        return {
            "slots": len(e.slots),
            "slots_busy": e.busy_slots,
            "slots_waiting": e.waiting,
            "prompt_tokens_reused": e.prompt_tokens_reused,
            "prompt_tokens_decoded": e.prompt_tokens_decoded,
        }

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        import numpy as np

        if self.llm is None:
            raise ValueError("this model was not loaded for embeddings")
        tokens = sum(len(self.model.tokenize(t.encode("utf-8"), add_bos=True, special=False)) for t in texts)
        vectors = self.llm.embed(texts, normalize=True)
        return np.asarray(vectors, dtype=np.float32), tokens


def _token_text(model: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(model.detokenize([token], special=True)).decode("utf-8", errors="ignore")


def _cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


__all__ = ["Chunk", "ContextLengthExceeded", "ControlText", "LlamaRuntime", "Sampling"]
