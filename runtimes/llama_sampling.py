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


@dataclass
class Chunk:
    text: str
    finish_reason: str | None = None


def build_sampler(lc: Any, vocab: Any, sampling: Sampling, prompt: list[int]) -> Any:
    """A new sampler chain (the caller frees it with ``llama_sampler_free``). Penalties count the prompt's last
    tokens too, as llama-cpp-python's did; llama.cpp's sampler then accepts each token it samples."""
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    add = lc.llama_sampler_chain_add
    if sampling.presence_penalty or sampling.frequency_penalty:
        n_vocab = lc.llama_vocab_n_tokens(vocab)
        penalties = lc.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, 1.0, sampling.frequency_penalty, sampling.presence_penalty
        )
        add(chain, penalties)
        for token in prompt[-PENALTY_LAST_N:]:
            lc.llama_sampler_accept(penalties, token)
    if sampling.temperature <= 0:
        add(chain, lc.llama_sampler_init_greedy())
        return chain
    add(chain, lc.llama_sampler_init_top_k(TOP_K))
    add(chain, lc.llama_sampler_init_top_p(sampling.top_p, 1))
    add(chain, lc.llama_sampler_init_min_p(MIN_P, 1))
    add(chain, lc.llama_sampler_init_temp(sampling.temperature))
    seed = lc.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF
    add(chain, lc.llama_sampler_init_dist(seed))
    return chain
