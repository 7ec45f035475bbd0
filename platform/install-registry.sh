#!/usr/bin/env bash
# The CNCF Distribution registry from Debian's `docker-registry` package, for the registry tests: unpacked into a
# cache folder (no service is installed or started, no root needed once apt's package lists exist).
# Usage: platform/install-registry.sh [DIR]     prints the path of the `docker-registry` binary
# DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/tursi/registry. A system-wide /usr/bin/docker-registry is used as is.
set -euo pipefail
if command -v docker-registry >/dev/null; then command -v docker-registry; exit 0; fi
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tursi/registry}
bin="$dir/usr/bin/docker-registry"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -q docker-registry >&2; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-registry.sh: apt-get download docker-registry failed; as root, run apt-get update first" >&2
    exit 77
  fi
  bash "$here/apt.sh" update -q >&2
  apt-get download -q docker-registry >&2
fi
dpkg-deb -x docker-registry_*.deb "$dir"
"$bin" --version >&2
echo "$bin"
