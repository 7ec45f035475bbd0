#!/usr/bin/env bash
# Build llama-cpp-python once with explicit CPU flags, keep the wheel, install it.
#
# Why: the default build uses -march=native and on CPUs with AMX (GCC 12) crashes
# with SIGILL on multi-token prompts; and pip's wheel cache ignores CMAKE_ARGS,
# so a wheel built with other flags would be silently reused. We therefore build
# with GGML_NATIVE=OFF, name the x86 features this CPU really has, and keep the
# wheel in a folder keyed by version + flags.
#
# Usage: platform/install-llama-cpp.sh [PYTHON]   (default: python3)
# Env:   TURSI_WHEEL_CACHE (default ~/.cache/tursi/wheels)
#        LLAMA_CPP_VERSION (default 0.3.36)
set -euo pipefail
py=${1:-python3}
version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${TURSI_WHEEL_CACHE:-$HOME/.cache/tursi/wheels}

flags=$(bash "$(dirname "$0")/llama-cpp-flags.sh")

key=$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-16)
dir="$cache/llama-cpp-python-$version-$key"
if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  # `make test` has built it already, with llama.cpp's own server in the same tree (build-llama-cpp.sh)
  dir=$(bash "$(dirname "$0")/build-llama-cpp.sh" "$py" wheel | head -1)
fi
"$py" -m pip install --no-deps --force-reinstall "$dir"/llama_cpp_python-*.whl
# the bindings' own small pure-python deps
"$py" -m pip install "diskcache>=5.6.1" "jinja2>=2.11.3" "typing-extensions>=4.5.0"
echo "llama-cpp-python $version installed from $dir"
