#!/usr/bin/env bash
# Install what building runtime packs and emulating an aarch64 device need, from Debian's packages:
#   g++-aarch64-linux-gnu   cross-compiles llama.cpp for a device profile (tursi pack)
#   qemu-user (>= 10)       runs aarch64 programs here; bookworm's own 7.2 crashes importing onnxruntime >= 1.28,
#                           so it comes from bookworm-backports
#   debootstrap             builds the arm64 root filesystem the emulated-device test runs in
#   cmake, ninja-build      the cross build's CMake tree outlives pip's build env, so it uses the system's tools
# Does nothing when all are present (qemu-aarch64 10 or newer). Needs root and apt (Debian 12).
# Usage: platform/install-arm-tools.sh [--check]    --check: exit 1 and say what is missing, install nothing
set -euo pipefail
missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
qemu_major=$( { qemu-aarch64 --version 2>/dev/null || true; } | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
[ "${qemu_major:-0}" -ge 10 ] || missing+=(qemu-user)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${1:-}" = "--check" ]; then
  echo "missing: ${missing[*]} (qemu-aarch64 ${qemu_major:-absent}, 10 or newer needed)"
  exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-arm-tools.sh: ${missing[*]} missing; installing them needs root and apt-get (Debian 12)" >&2
  exit 77
fi
. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
backports=${VERSION_CODENAME:-bookworm}-backports
if ! grep -rqs "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian $backports main" >"/etc/apt/sources.list.d/$backports.list"
fi
apt_sh=$(cd "$(dirname "$0")" && pwd)/apt.sh
apt() { bash "$apt_sh" "$@"; }
apt update -q
apt install -y -q --no-install-recommends g++-aarch64-linux-gnu binutils-aarch64-linux-gnu debootstrap \
  cmake ninja-build
apt install -y -q --no-install-recommends -t "$backports" qemu-user
qemu-aarch64 --version | head -1
