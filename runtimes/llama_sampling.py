"""How one stream picks its tokens: the request's sampling settings as a llama.cpp sampler chain.

The chain runs inside llama.cpp on the context's logits (nothing is copied into Python). Its order and the fixed
settings (top-k 40, min-p 0.05) are llama-cpp-python's ``create_completion`` defaults, so a seeded request samples
as it did before the engine existed; temperature 0 is greedy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOP_K = 40
MIN_P = 0.05
PENALTY_LAST_N = 64


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0  # llama.cpp's (Ollama's option): divides the logits of the recent tokens
    repeat_last_n: int = PENALTY_LAST_N
    top_k: int = TOP_K
    min_p: float = MIN_P
    grammar: str | None = None  # GBNF (root rule "root"): only tokens that keep the text inside it are sampled
    logprobs: int | None = None  # None: off; n: each token's log-probability and the n likeliest alternatives


class GrammarRejected(ValueError):
    pass


@dataclass
class Chunk:
    text: str
    finish_reason: str | None = None
    # one entry per token since the last chunk, OpenAI's chat shape: token, bytes, logprob, top_logprobs
    logprobs: list[dict[str, Any]] | None = None


def build_sampler(lc: Any, vocab: Any, sampling: Sampling, prompt: list[int]) -> Sampler:
    """A new sampler (the caller frees it). Penalties count the prompt's last tokens too, as llama-cpp-python's
    did; llama.cpp's sampler then accepts each token it samples."""
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    add = lc.llama_sampler_chain_add
    last_n = sampling.repeat_last_n
    if (sampling.presence_penalty or sampling.frequency_penalty or sampling.repeat_penalty != 1.0) and last_n:
        n_vocab = lc.llama_vocab_n_tokens(vocab)
        penalties = lc.llama_sampler_init_penalties(
            n_vocab, last_n, sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty
        )
        add(chain, penalties)
        for token in prompt[-last_n:]:
            lc.llama_sampler_accept(penalties, token)
    if sampling.temperature <= 0:
        add(chain, lc.llama_sampler_init_greedy())
    else:
        add(chain, lc.llama_sampler_init_top_k(sampling.top_k))
        add(chain, lc.llama_sampler_init_top_p(sampling.top_p, 1))
        add(chain, lc.llama_sampler_init_min_p(sampling.min_p, 1))
        add(chain, lc.llama_sampler_init_temp(sampling.temperature))
        seed = lc.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF
        add(chain, lc.llama_sampler_init_dist(seed))
    if sampling.grammar is None:
        return Sampler(lc, chain)
    grammar = lc.llama_sampler_init_grammar(vocab, sampling.grammar.encode(), b"root")
    if not grammar:
        lc.llama_sampler_free(chain)
        raise GrammarRejected("llama.cpp could not parse the grammar")
    return GrammarSampler(lc, chain, grammar, int(lc.llama_vocab_n_tokens(vocab)))


class Sampler:
    """A llama.cpp sampler chain run on the context's logits (``llama_sampler_sample``: nothing leaves C)."""

    def __init__(self, lc: Any, chain: Any) -> None:
        self.lc, self.chain = lc, chain

    def sample(self, ctx: Any, index: int) -> int:
        return int(self.lc.llama_sampler_sample(self.chain, ctx, index))

    def free(self) -> None:
        self.lc.llama_sampler_free(self.chain)


class GrammarSampler(Sampler):
    """The chain, constrained by a grammar, the way llama-server samples: checking one token against the grammar is
    cheap, masking the whole vocabulary is not (every candidate's text is run through the grammar's stacks). So the
    chain samples freely first; only when the grammar refuses that token is the vocabulary masked and the chain
    run again on what is left. The result is the same as masking first."""

    def __init__(self, lc: Any, chain: Any, grammar: Any, n_vocab: int) -> None:
        import numpy as np

        super().__init__(lc, chain)
        self.grammar, self.n_vocab = grammar, n_vocab
        fields = [("id", np.int32), ("logit", np.float32), ("p", np.float32)]
        self.cells = np.zeros(n_vocab, dtype=np.dtype(fields, align=True))
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.one = (lc.llama_token_data * 1)()
        self.array = lc.llama_token_data_array()

    def sample(self, ctx: Any, index: int) -> int:
        import ctypes

        import numpy as np

        logits = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        cells = self.cells
        cells["id"], cells["logit"], cells["p"] = self.ids, logits, 0.0
        data = cells.ctypes.data_as(ctypes.POINTER(self.lc.llama_token_data))
        token = self._pick(self.chain, data)
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 1.0, 0.0
        self._apply(self.grammar, ctypes.cast(self.one, ctypes.POINTER(self.lc.llama_token_data)), 1)
        if self.one[0].logit == float("-inf"):  # refused: mask the vocabulary, then sample again
            cells["id"], cells["logit"], cells["p"] = self.ids, logits, 0.0
            self._apply(self.grammar, data, self.n_vocab)
            token = self._pick(self.chain, data)
        self.lc.llama_sampler_accept(self.grammar, token)
        self.lc.llama_sampler_accept(self.chain, token)
        return token

    def _apply(self, sampler: Any, data: Any, size: int) -> int:
        import ctypes

        self.array.data, self.array.size, self.array.selected, self.array.sorted = data, size, -1, False
        self.lc.llama_sampler_apply(sampler, ctypes.byref(self.array))
        return int(self.array.selected)

    def _pick(self, sampler: Any, data: Any) -> int:
        """The token the chain selects; its samplers sort and shrink the array in place, so the selection is read
        back through the array as they left it."""
        selected = self._apply(sampler, data, self.n_vocab)
        if not 0 <= selected < self.array.size:
            raise GrammarRejected("no token satisfies the output format here")
        return int(self.array.data[selected].id)

    def free(self) -> None:
        super().free()
        self.lc.llama_sampler_free(self.grammar)
