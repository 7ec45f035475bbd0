#!/usr/bin/env bash
# Prints the CMake flags Tursi builds llama.cpp with on this machine: no -march=native (on CPUs with AMX,
# GCC 12's native build crashes with SIGILL), and every x86 feature this CPU has named explicitly.
# Sourced by install-llama-cpp.sh (the Python bindings) and build-llama-server.sh (llama.cpp's own server),
# so both are built alike and their cache keys agree.
set -euo pipefail
flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if [ "$(uname -m)" = "aarch64" ]; then
  # On a Pi or a Jetson the device builds for itself: -mcpu=native picks NEON, dotprod and i8mm as the
  # core has them (the AMX problem is x86-only).
  flags="-DGGML_NATIVE=ON"
elif [ "$(uname -m)" = "x86_64" ]; then
  cpu=$(grep -m1 '^flags' /proc/cpuinfo || true)
  has() { grep -qw "$1" <<<"$cpu"; }
  for f in avx avx2 fma f16c; do
    has "$f" && flags="$flags -DGGML_$(tr a-z A-Z <<<"$f")=ON" || flags="$flags -DGGML_$(tr a-z A-Z <<<"$f")=OFF"
  done
  if has avx512f && has avx512bw && has avx512vl; then
    flags="$flags -DGGML_AVX512=ON"
    has avx512vbmi && flags="$flags -DGGML_AVX512_VBMI=ON"
    has avx512_vnni && flags="$flags -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && flags="$flags -DGGML_AVX512_BF16=ON"
  else
    flags="$flags -DGGML_AVX512=OFF"
  fi
  has avx_vnni && flags="$flags -DGGML_AVX_VNNI=ON"
fi
printf '%s\n' "$flags"
