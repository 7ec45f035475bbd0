"""llama.cpp's C API through llama-cpp-python's ctypes bindings, without the rest of that package.

``import llama_cpp`` runs the package's ``__init__``, which loads its high-level ``Llama`` class and with it numpy,
diskcache and the chat formats: about 17 MiB a chat worker never uses. ``bindings()`` loads only the
``llama_cpp.llama_cpp`` module (ctypes declarations and the shared libraries). When the whole package is already
imported (an embeddings worker, a test), that module is simply reused.

``Vocab`` is the little of the model a server needs besides decoding: tokenize, detokenize, metadata.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import sys
import types
from typing import Any

_LOG_LEVEL_ERROR = 3
_keep: list[Any] = []  # ctypes callbacks must outlive the library's use of them


def bindings() -> Any:
    """The ``llama_cpp.llama_cpp`` module, loaded without ``llama_cpp/__init__.py`` if that has not run yet."""
    if "llama_cpp" not in sys.modules:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("llama-cpp-python is not installed (platform/install-llama-cpp.sh installs it)")
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin

        def complete(name: str) -> Any:  # someone wants more than the C API (``from llama_cpp import Llama``)
            del package.__getattr__
            if spec.loader is not None:
                spec.loader.exec_module(package)  # the package's own __init__, run late into the same module
            return getattr(package, name)

        package.__getattr__ = complete  # type: ignore[method-assign]
        sys.modules["llama_cpp"] = package  # a namespace for the submodule: the package's __init__ has not run
    return importlib.import_module("llama_cpp.llama_cpp")


def quiet_logs(lc: Any) -> None:
    """llama.cpp's own log lines to stderr only for errors (the worker's log stays readable)."""

    @lc.llama_log_callback
    def on_log(level: int, text: bytes, user_data: Any) -> None:
        if level == _LOG_LEVEL_ERROR:
            sys.stderr.write(text.decode("utf-8", errors="replace"))

    _keep.append(on_log)
    lc.llama_log_set(on_log, ctypes.c_void_p(0))


class Vocab:
    """Tokenizer and metadata of a loaded ``llama_model``."""

    def __init__(self, lc: Any, model: Any) -> None:
        self.lc, self.model = lc, model
        self.vocab = lc.llama_model_get_vocab(model)

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        n = len(text) + 2
        tokens = (self.lc.llama_token * n)()
        got = self.lc.llama_tokenize(self.vocab, text, len(text), tokens, n, add_bos, special)
        if got < 0:  # cannot happen with n >= bytes + specials, but the API says how many it needs
            n = -got
            tokens = (self.lc.llama_token * n)()
            got = self.lc.llama_tokenize(self.vocab, text, len(text), tokens, n, add_bos, special)
        return list(tokens[:got])

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return b"".join(self.piece(t, special) for t in tokens)

    def token_bos(self) -> int:
        return int(self.lc.llama_vocab_bos(self.vocab))

    def token_eos(self) -> int:
        return int(self.lc.llama_vocab_eos(self.vocab))

    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(self.lc.llama_model_meta_count(self.model)):
            key = self._meta(self.lc.llama_model_meta_key_by_index, i)
            out[key] = self._meta(self.lc.llama_model_meta_val_str_by_index, i)
        return out

    def _meta(self, read: Any, i: int) -> str:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = read(self.model, i, buf, size)
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1
