"""What a runtime is, as types: the worker programs against these, and mypy checks every backend against them.

Every backend is a ``Runtime`` (it reports its metadata). A task is a capability on top of that: a runtime that
serves embeddings is an ``Embedder``, one that serves chat and completions a ``TextGenerator``, and so on.
One backend class may have several (llama.cpp embeds or generates, as loaded). The worker picks the protocol from
the deployment's task (``FOR_TASK``) and narrows its runtime with ``isinstance``: the protocols are
``runtime_checkable``, so a runtime that lacks a task's methods is refused before a request reaches it.

Methods are synchronous and CPU-bound; the worker calls them from its model thread, never on the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from runtimes.llama_engine import Emit, Job
    from runtimes.llama_runtime import LlamaRuntime, Sampling
    from runtimes.onnx_embed import OnnxEmbedder
    from runtimes.onnx_tasks import OnnxClassifier, OnnxFillMask

Ranked = list[list[dict[str, Any]]]  # per input text, the best answers first (label or token, with its score)


@runtime_checkable
class Runtime(Protocol):
    def info(self) -> dict[str, Any]:
        """Metadata for /ready and the worker's log (dimension, context size, chat template, ...)."""
        ...


@runtime_checkable
class Embedder(Runtime, Protocol):
    def embed(self, texts: list[str]) -> tuple[Any, int]:
        """(float32 array [n, dimension], number of input tokens)."""
        ...


@runtime_checkable
class BatchEmbedder(Embedder, Protocol):
    """An embedder whose calls the worker may coalesce across concurrent requests (tursi.worker.batcher)."""

    def embed_batch(self, texts: list[str], max_batch: int = ...) -> tuple[Any, list[int]]:
        """(float32 array [n, dimension], each text's token count), run in groups of at most ``max_batch``."""
        ...


@runtime_checkable
class Classifier(Runtime, Protocol):
    def classify(self, texts: list[str], top_k: int | None) -> tuple[Ranked, int]:
        """Per text, ``{"label", "score"}`` best first (all labels when ``top_k`` is None); input tokens."""
        ...


@runtime_checkable
class Reranker(Runtime, Protocol):
    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """Each document's relevance to ``query`` (0-1, higher is more relevant), in input order; input tokens."""
        ...


@runtime_checkable
class MaskFiller(Runtime, Protocol):
    mask_token: str  # the text each input must contain once

    def fill_mask(self, texts: list[str], top_k: int | None) -> tuple[Ranked, int]:
        """Per text, ``{"token", "token_id", "score", "sequence"}`` best first; input tokens."""
        ...


@runtime_checkable
class TextGenerator(Runtime, Protocol):
    """Chat and completions. Prompt methods raise ``llama_runtime.ControlText``, ``chat_template.TemplateRejected``
    or ``llama_runtime.ContextLengthExceeded`` for a client's input they refuse."""

    def tokenize_prompt(self, text: str) -> list[int]: ...

    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]: ...

    def check_context(self, prompt: list[int], max_tokens: int | None) -> None: ...

    def submit(self, prompt: list[int], sampling: Sampling, emit: Emit, **options: Any) -> Job:
        """Queue a generation. ``emit`` gets each ``Chunk`` from the engine's thread as it is produced; the last one
        carries the finish reason, or an exception arrives instead. Options are ``Job``'s (gone, cache_prompt)."""
        ...

    def cancel(self, job: Job) -> None:
        """Stop a job and free its slot (nothing happens if it has finished)."""
        ...

    def slots(self) -> dict[str, int]:
        """Slot occupancy and prompt-cache counters for /metrics."""
        ...

    def count_tokens(self, text: str) -> int: ...


FOR_TASK: dict[str, type] = {
    "embeddings": Embedder,
    "chat": TextGenerator,
    "classification": Classifier,
    "fill-mask": MaskFiller,
    "rerank": Reranker,
}


if TYPE_CHECKING:

    def _backends_conform(
        embedder: OnnxEmbedder, classifier: OnnxClassifier, filler: OnnxFillMask, llama: LlamaRuntime
    ) -> None:
        """Never called: mypy proves here that each backend has the methods of every task it serves."""
        _embeds: BatchEmbedder = embedder
        _classifies: Classifier = classifier
        _fills: MaskFiller = filler
        _generates: TextGenerator = llama
        _embeds_too: Embedder = llama  # loaded with embedding=True for an embeddings deployment
