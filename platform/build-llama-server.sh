#!/usr/bin/env bash
# Build llama.cpp's own server (llama-server) from the source vendored in llama-cpp-python's sdist, with the
# same flags as the Python bindings (llama-cpp-flags.sh), keep it in a folder keyed by version + flags, and
# print its path. The benchmark runs it as the baseline Tursi's LLM serving is measured against.
#
# Usage: platform/build-llama-server.sh [PYTHON]   (PYTHON runs `pip download`; default: python3)
# Env:   TURSI_WHEEL_CACHE (default ~/.cache/tursi/wheels), LLAMA_CPP_VERSION (default 0.3.36)
set -euo pipefail
py=${1:-python3}
version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${TURSI_WHEEL_CACHE:-$HOME/.cache/tursi/wheels}
flags=$(bash "$(dirname "$0")/llama-cpp-flags.sh")
# static, no HTTPS, no web UI: one self-contained binary
extra="-DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF"
extra="$extra -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_BUILD_TYPE=Release"
key=$(printf '%s %s %s' "$version" "$flags" "$extra" | sha256sum | cut -c1-16)
dir="$cache/llama-server-$version-$key"
mkdir -p "$cache"
# one build at a time per key: a second caller (make test and a bench run at once) waits, then reuses it
exec 9>"$cache/.llama-server-$version-$key.lock"
flock 9
if [ ! -x "$dir/llama-server" ]; then
  tmp=$(mktemp -d "$cache/.tmp-server.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building llama-server $version (takes ~8 min on 2 cores) with: $flags" >&2
  "$py" -m pip download -q --no-binary :all: --no-deps -d "$tmp" "llama-cpp-python==$version" >&2
  tar -xzf "$tmp"/llama_cpp_python-"$version".tar.gz -C "$tmp"
  src="$tmp/llama_cpp_python-$version/vendor/llama.cpp"
  # shellcheck disable=SC2086  # the flags are separate words on purpose
  cmake -S "$src" -B "$tmp/build" $flags $extra >"$tmp/configure.log" 2>&1 \
    || { tail -30 "$tmp/configure.log" >&2; exit 1; }
  cmake --build "$tmp/build" --target llama-server -j "$(nproc)" >"$tmp/build.log" 2>&1 \
    || { tail -30 "$tmp/build.log" >&2; exit 1; }
  mkdir -p "$tmp/out"
  cp "$tmp/build/bin/llama-server" "$tmp/out/"
  printf '%s %s\n' "$flags" "$extra" >"$tmp/out/CMAKE_ARGS"
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
fi
printf '%s\n' "$dir/llama-server"
