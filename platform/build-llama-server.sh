#!/usr/bin/env bash
# llama.cpp's own server (llama-server), the benchmark's baseline for Tursi's LLM serving: built from the source
# vendored in llama-cpp-python's sdist with the same flags as the Python bindings, in the same CMake tree as
# their wheel (platform/build-llama-cpp.sh), and kept in a folder keyed by version + flags. Prints its path.
#
# Usage: platform/build-llama-server.sh [PYTHON]   (PYTHON runs `pip`; default: python3)
# Env:   TURSI_WHEEL_CACHE (default ~/.cache/tursi/wheels), LLAMA_CPP_VERSION (default 0.3.36)
set -euo pipefail
dir=$(bash "$(dirname "$0")/build-llama-cpp.sh" "${1:-python3}" | tail -1)
printf '%s\n' "$dir/llama-server"
