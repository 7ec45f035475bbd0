#!/usr/bin/env bash
# Debian's Chromium, for the dashboard's browser tests (Playwright drives it through executable_path: Playwright's
# own browser downloads are not possible here). Installs the package as root when it is missing.
# Usage: platform/install-chromium.sh     prints the path of the `chromium` binary
set -euo pipefail
if command -v chromium >/dev/null; then command -v chromium; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "install-chromium.sh: Chromium is missing; as root: apt-get install chromium" >&2
  exit 77
fi
export DEBIAN_FRONTEND=noninteractive
apt_sh=$(cd "$(dirname "$0")" && pwd)/apt.sh
apt() { bash "$apt_sh" "$@"; }
if ! apt install -y -q chromium >&2; then
  apt update -q >&2
  apt install -y -q chromium >&2
fi
chromium --version >&2
command -v chromium
