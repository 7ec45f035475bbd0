"""Chat, completions and embeddings on llama.cpp through llama-cpp-python.

Generation is synchronous and runs in a worker thread; each token is handed to the caller's
callback, which can ask to stop (a client that went away) by returning False.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.chat_template import UNTRUSTED_FIELDS, ChatTemplate
from runtimes.cpu_check import check_llama_build

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


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass
class Chunk:
    text: str
    finish_reason: str | None = None


class LlamaRuntime:
    def __init__(self, llm: Any, template: ChatTemplate | None, embedding: bool, model_file: Path, n_ctx: int) -> None:
        self.llm = llm
        self.template = template
        self.embedding = embedding
        self.model_file = model_file
        # llama.cpp may round its context up; the Python side's buffers follow what was asked
        self.n_ctx = min(int(llm.n_ctx()), n_ctx)

    @classmethod
    def load(cls, model_file: Path, *, threads: int, n_ctx: int, embedding: bool) -> LlamaRuntime:
        check_llama_build()
        from llama_cpp import Llama

        llm = Llama(
            model_path=str(model_file),
            n_ctx=n_ctx,
            n_threads=threads or None,
            n_threads_batch=threads or None,
            embedding=embedding,
            verbose=False,
        )
        template = None
        if not embedding:
            bos = _token_text(llm, llm.token_bos())
            eos = _token_text(llm, llm.token_eos())
            template = ChatTemplate.load(llm.metadata.get("tokenizer.chat_template"), bos, eos)
        return cls(llm, template, embedding, model_file, n_ctx)

    def info(self) -> dict[str, Any]:
        md = self.llm.metadata
        return {
            "n_ctx": self.n_ctx,
            "architecture": md.get("general.architecture"),
            "n_ctx_train": int(md.get(f"{md.get('general.architecture')}.context_length", 0) or 0),
            "chat_template": "model" if self.template and self.template.from_model else "chatml-fallback",
            "embedding": self.embedding,
            "n_threads": self.llm.n_threads,
        }

    # -- prompts -----------------------------------------------------------------------------

    def _add_bos(self, text: str) -> bool:
        add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
        bos_text = self.template.bos_token if self.template else ""
        return add_bos and not (bos_text and text.startswith(bos_text))  # else the template wrote it already

    def tokenize_prompt(self, text: str) -> list[int]:
        """A raw completion prompt: the client writes the whole text, control tokens included."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=self._add_bos(text), special=True))

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """The template's own text may hold control tokens; the client's text (content, name) never does."""
        if self.template is None:
            raise ValueError("this model has no chat template")
        text, pieces = self.template.render_pieces(messages)
        if pieces is None:  # the template reshapes the client's text: refuse text that would turn into control
            self._refuse_control_text(messages)
            return self.tokenize_prompt(text)
        tokens = [t for t in self.llm.tokenize(b"", add_bos=self._add_bos(text), special=False) if t == self.bos_id]
        for piece, field in pieces:
            tokens += self.llm.tokenize(piece.encode("utf-8"), add_bos=False, special=field is None)
        return tokens

    def _refuse_control_text(self, messages: list[dict[str, Any]]) -> None:
        for i, msg in enumerate(messages):
            for key in UNTRUSTED_FIELDS:
                value = msg.get(key)
                if isinstance(value, str) and value:
                    data = value.encode("utf-8")
                    if self.llm.tokenize(data, add_bos=False, special=True) != self.llm.tokenize(
                        data, add_bos=False, special=False
                    ):
                        raise ControlText(f"messages[{i}].{key}")

    @property
    def bos_id(self) -> int:
        return int(self.llm.token_bos())

    def check_context(self, prompt: list[int], max_tokens: int | None) -> None:
        if len(prompt) >= self.n_ctx or (max_tokens and len(prompt) + max_tokens > self.n_ctx):
            raise ContextLengthExceeded(len(prompt), max_tokens, self.n_ctx)

    # -- generation --------------------------------------------------------------------------

    def generate(self, prompt: list[int], sampling: Sampling) -> Iterator[Chunk]:
        """Yield text pieces as llama.cpp produces them; the last chunk carries the finish reason."""
        self.check_context(prompt, sampling.max_tokens)
        max_tokens = sampling.max_tokens or (self.n_ctx - len(prompt))
        stream = self.llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            stream=True,
        )
        try:
            for part in stream:
                choice = part["choices"][0]
                yield Chunk(choice.get("text") or "", choice.get("finish_reason"))
        finally:
            stream.close()  # a consumer that stops early (client gone) stops llama.cpp here

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        import numpy as np

        if not self.embedding:
            raise ValueError("this model was not loaded for embeddings")
        tokens = sum(len(self.llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)) for t in texts)
        vectors = self.llm.embed(texts, normalize=True)
        return np.asarray(vectors, dtype=np.float32), tokens


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="ignore")


TokenCallback = Callable[[Chunk], bool]
