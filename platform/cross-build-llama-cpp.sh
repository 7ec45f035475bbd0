#!/usr/bin/env bash
# Cross-compile llama-cpp-python for an aarch64 device on this x86 workstation, keep the wheel, print its path.
#
# Why: building on a Pi takes long and needs a compiler and internet; a build made for a newer core dies with
# "Illegal instruction" on an older one. So each device profile gets its own build here, with the ARM arch it
# names (`-DGGML_CPU_ARM_ARCH`), GGML_NATIVE off (the build host is not the device), OpenMP off (a minimal device
# image has no libgomp; ggml's own thread pool is used instead), and the libraries find each other by $ORIGIN
# (llama-cpp-python's CMakeLists sets that run path). The wheel comes out tagged for the build host and is
# retagged for manylinux_2_28_aarch64 with `wheel tags`; pip's wheel cache ignores CMAKE_ARGS, so the wheel is kept
# in a folder keyed by version + flags + compiler.
#
# Usage: platform/cross-build-llama-cpp.sh ARM_ARCH [PYTHON]     e.g. armv8.2-a+dotprod .venv/bin/python
#   PYTHON needs pip and the `wheel` package (both in tursi's `convert` extra).
# Env:   TURSI_WHEEL_CACHE (default ~/.cache/tursi/wheels), LLAMA_CPP_VERSION (default 0.3.36)
# Needs: Debian's g++-aarch64-linux-gnu (platform/install-arm-tools.sh installs it), cmake and ninja.
# Prints the wheel's path as the last line of stdout; the build's own output goes to stderr.
set -euo pipefail
arch=${1:?usage: cross-build-llama-cpp.sh ARM_ARCH [PYTHON]}
py=${2:-python3}
version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${TURSI_WHEEL_CACHE:-$HOME/.cache/tursi/wheels}
platform_tag=manylinux_2_28_aarch64

case "$arch" in
  armv8-a|armv8.[0-9]-a|armv8.[0-9]-a+*|armv9-a|armv9-a+*) ;;
  *) echo "cross-build-llama-cpp.sh: '$arch' is not an ARM architecture name (e.g. armv8-a, armv8.2-a+dotprod)" >&2
     exit 64 ;;
esac
for tool in cmake ninja; do
  command -v "$tool" >/dev/null || {
    echo "cross-build-llama-cpp.sh: '$tool' not found (Debian: apt-get install cmake ninja-build)" >&2
    exit 69
  }
done
command -v aarch64-linux-gnu-g++ >/dev/null || {
  echo "cross-build-llama-cpp.sh: aarch64-linux-gnu-g++ not found; install it with platform/install-arm-tools.sh" \
       "(Debian: apt-get install g++-aarch64-linux-gnu)" >&2
  exit 69
}
"$py" -m wheel version >/dev/null 2>&1 || {
  echo "cross-build-llama-cpp.sh: $py has no 'wheel' package (pip install wheel) to retag the build" >&2
  exit 69
}

flags="-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64"
flags="$flags -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++"
flags="$flags -DCMAKE_FIND_ROOT_PATH=/usr/aarch64-linux-gnu -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER"
flags="$flags -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY"
flags="$flags -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=$arch -DGGML_OPENMP=OFF"
compiler=$(aarch64-linux-gnu-g++ -dumpfullversion)
key=$(printf '%s %s aarch64-linux-gnu-g++ %s' "$version" "$flags" "$compiler" | sha256sum | cut -c1-16)
dir="$cache/llama-cpp-python-$version-aarch64-$key"

mkdir -p "$cache"
# one build at a time per key: a second caller (two `tursi pack` runs at once) waits, then reuses it
exec 9>"$cache/.llama-cpp-python-$version-aarch64-$key.lock"
flock 9
if ! ls "$dir"/llama_cpp_python-*-"$platform_tag".whl >/dev/null 2>&1; then
  # Every profile builds in one CMake tree kept for this version + compiler: -march only reaches ggml's CPU
  # backend (GGML_CPU_ARM_ARCH), so a second profile recompiles that library alone, not llama, common and mtmd
  # (rpi4 after rpi5: 34 s instead of 5 minutes on 2 cores). The tree has its own lock: two profiles build one
  # after the other.
  tree="$cache/.tree-llama-cpp-python-$version-aarch64-$(printf '%s %s' "$version" "$compiler" | sha256sum | cut -c1-16)"
  exec 8>"$tree.lock"
  flock 8
  echo "cross-compiling llama-cpp-python $version for aarch64 $arch (about 5 min on 2 cores for the first" \
       "profile, under a minute for each other one; once per flags)" >&2
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if [ ! -d "$tree/src/llama_cpp_python-$version" ]; then
    rm -rf "$tree"
    mkdir -p "$tree/src"
    "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$tmp/sdist" "llama-cpp-python==$version" >&2
    tar -xzf "$tmp"/sdist/llama_cpp_python-"$version".tar.gz -C "$tree/src"
  fi
  # the tree is reconfigured by the system's CMake and Ninja, not those of pip's build env (gone after the build)
  CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$py" -m pip wheel -v --no-cache-dir --no-deps -C build-dir="$tree/build" -w "$tmp/host" \
    "$tree/src/llama_cpp_python-$version" >&2 \
    || { rm -rf "$tree"; echo "cross-build-llama-cpp.sh: the build failed; its tree is removed" >&2; exit 1; }
  "$py" -m wheel tags --remove --platform-tag "$platform_tag" "$tmp"/host/llama_cpp_python-*.whl >&2
  mkdir "$tmp/out"
  mv "$tmp"/host/llama_cpp_python-*-"$platform_tag".whl "$tmp/out/"
  printf '%s\n' "$flags" >"$tmp/out/CMAKE_ARGS"
  printf '%s\n' "$compiler" >"$tmp/out/COMPILER"
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
fi
ls "$dir"/llama_cpp_python-*-"$platform_tag".whl
