"""Next-token logits of a prompt, as JSON on stdout: run with any Python that has llama_cpp (the workstation's, or
the emulated device's from its runtime pack) to compare llama.cpp's kernels on two CPUs with the same GGUF.

Usage: python llama_logits.py MODEL.gguf PROMPT [TOP_K]
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    import llama_cpp
    import numpy as np

    model, prompt = argv[1], argv[2]
    top_k = int(argv[3]) if len(argv) > 3 else 10
    llm = llama_cpp.Llama(model_path=model, n_ctx=256, n_threads=2, n_batch=256, verbose=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.eval(tokens)
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
    order = np.argsort(-logits)[:top_k]
    top = [[int(i), float(logits[i]), llm.detokenize([int(i)]).decode("utf-8", "replace")] for i in order]
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    sys.stdout.write(json.dumps({"prompt_tokens": len(tokens), "top": top, "system_info": system_info}) + "\n")


if __name__ == "__main__":
    main(sys.argv)
