#!/usr/bin/env bash
# Build llama-cpp-python's wheel AND llama.cpp's own server (llama-server, the bench's baseline) in ONE CMake
# build tree, with this machine's flags (llama-cpp-flags.sh), and keep each in its folder keyed by version + flags.
#
# Why one tree: both need the same ggml, llama, common and mtmd libraries built with the same flags; compiling
# them once instead of twice saves about 4 minutes of a fresh machine's 2 cores. The wheel is built by pip from
# the unpacked sdist with a build directory that outlives it (scikit-build-core's `build-dir`); then the same tree
# is reconfigured with llama.cpp's tools on and only the `llama-server` target is built. The server links the
# tree's shared libraries, which are copied next to it (run path $ORIGIN), so its folder is self-contained.
# CMake and Ninja come from the system (PATH) so the tree can be reconfigured after pip's isolated build env is gone.
#
# Usage: platform/build-llama-cpp.sh [PYTHON [both|wheel]]     (PYTHON runs pip; default python3)
#   both (default): when either folder is missing, builds both and writes whichever is missing.
#   wheel: only the wheel, and nothing when it is cached (`make demo` and `make check` need no server).
# Env:   TURSI_WHEEL_CACHE (default ~/.cache/tursi/wheels), LLAMA_CPP_VERSION (default 0.3.36)
# Prints two lines: the wheel's folder, then the server's folder.
set -euo pipefail
py=${1:-python3}
parts=${2:-both}
case "$parts" in both|wheel) ;; *) echo "build-llama-cpp.sh: the second argument is both or wheel, not '$parts'" >&2; exit 64 ;; esac
here=$(dirname "$0")
version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${TURSI_WHEEL_CACHE:-$HOME/.cache/tursi/wheels}
flags=$(bash "$here/llama-cpp-flags.sh")
# the server: no HTTPS, the tools on only for its reconfigure (llama-cpp-python adds mtmd itself otherwise)
server_flags="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF"
server_flags="$server_flags -DCMAKE_BUILD_RPATH=\$ORIGIN"
wheel_dir="$cache/llama-cpp-python-$version-$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-16)"
server_key=$(printf '%s %s shared-tree %s' "$version" "$flags" "$server_flags" | sha256sum | cut -c1-16)
server_dir="$cache/llama-server-$version-$server_key"

if [ "$parts" = both ] && ! { command -v cmake && command -v ninja; } >/dev/null; then
  # the tree is reconfigured after pip's build env is gone, so the build must use the system's CMake and Ninja
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive bash "$here/apt.sh" install -y -q cmake ninja-build >&2 \
      || { bash "$here/apt.sh" update -q >&2 && DEBIAN_FRONTEND=noninteractive bash "$here/apt.sh" install -y -q cmake ninja-build >&2; }
  else
    echo "build-llama-cpp.sh: cmake and ninja are needed on PATH (Debian: apt-get install cmake ninja-build)" >&2
    exit 69
  fi
fi
mkdir -p "$cache"
# one build at a time: `make install` and a bench run at once wait for each other, then reuse the result
exec 9>"$cache/.llama-cpp-$version-$(printf '%s' "$flags" | sha256sum | cut -c1-16).lock"
flock 9
have_wheel=$(ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1 && echo yes || true)
if [ -n "$have_wheel" ] && { [ "$parts" = wheel ] || [ -x "$server_dir/llama-server" ]; }; then
  printf '%s\n%s\n' "$wheel_dir" "$server_dir"
  exit 0
fi
tmp=$(mktemp -d "$cache/.tmp-llama.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
what="llama-cpp-python $version (about 5 min on 2 cores)"
[ "$parts" = both ] && what="llama-cpp-python $version and llama-server in one tree (about 9 min on 2 cores)"
echo "building $what with: $flags" >&2
"$py" -m pip download -q --no-binary :all: --no-deps -d "$tmp/sdist" "llama-cpp-python==$version" >&2
mkdir "$tmp/src"
tar -xzf "$tmp"/sdist/llama_cpp_python-"$version".tar.gz -C "$tmp/src"
src="$tmp/src/llama_cpp_python-$version"
CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$py" -m pip wheel --no-cache-dir --no-deps -C build-dir="$tmp/build" -w "$tmp/wheel" "$src" >&2
printf '%s\n' "$flags" >"$tmp/wheel/CMAKE_ARGS"
if [ "$parts" = wheel ]; then
  rm -rf "$wheel_dir"
  mv "$tmp/wheel" "$wheel_dir"
  printf '%s\n%s\n' "$wheel_dir" "$server_dir"
  exit 0
fi
# shellcheck disable=SC2086  # the flags are separate words on purpose
cmake -S "$src" -B "$tmp/build" $server_flags >"$tmp/configure.log" 2>&1 || { tail -30 "$tmp/configure.log" >&2; exit 1; }
cmake --build "$tmp/build" --target llama-server -j "$(nproc)" >"$tmp/server.log" 2>&1 \
  || { tail -30 "$tmp/server.log" >&2; exit 1; }
mkdir "$tmp/server"
cp -P "$tmp/build/bin/llama-server" "$tmp"/build/bin/lib*.so* "$tmp/server/"
printf '%s %s\n' "$flags" "$server_flags" >"$tmp/server/CMAKE_ARGS"
rm -rf "$tmp/build"  # so the check below proves the copy finds its libraries by $ORIGIN, not in the tree
"$tmp/server/llama-server" --version >/dev/null 2>&1 \
  || { echo "build-llama-cpp.sh: the built llama-server does not start:" >&2; "$tmp/server/llama-server" --version >&2; exit 1; }
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then rm -rf "$wheel_dir"; mv "$tmp/wheel" "$wheel_dir"; fi
if [ ! -x "$server_dir/llama-server" ]; then rm -rf "$server_dir"; mv "$tmp/server" "$server_dir"; fi
printf '%s\n%s\n' "$wheel_dir" "$server_dir"
