"""Keeping tursid small when idle (goal: under 40 MB RSS on a Pi, next to the models it serves).

glibc gives each thread that calls malloc its own arena, and freed memory stays mapped until trimmed; a
daemon that mostly waits does better with one arena and a trim now and then. No-ops away from glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_ARENA_MAX = -8
# The control API is light: the pure-Python HTTP parser and URL/multidict code are plenty, and
# skipping their C extensions saves about 2 MB. Set only while tursid imports aiohttp (workers keep them), and only
# when the gateway is off: requests through the gateway cost half the CPU with the C parsers (measured: 1.2 vs
# 2.3 ms a request).
PURE_PYTHON = (
    "AIOHTTP_NO_EXTENSIONS",
    "YARL_NO_EXTENSIONS",
    "MULTIDICT_NO_EXTENSIONS",
    "PROPCACHE_NO_EXTENSIONS",
    "FROZENLIST_NO_EXTENSIONS",
)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


_LIBC = _libc()


def cap_malloc_arenas(n: int = 1) -> None:  # one arena: tursid mostly waits
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, n)


def release_free_memory() -> None:
    """Collect cycles, then hand freed heap pages back to the kernel (a few ms on a small heap)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def import_server_lean() -> None:
    """Import aiohttp's server without its C extensions, leaving the environment as it was for children."""
    saved = {k: os.environ.get(k) for k in PURE_PYTHON}
    os.environ.update(dict.fromkeys(PURE_PYTHON, "1"))
    try:
        import aiohttp.web  # noqa: F401
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
