#!/usr/bin/env bash
# Fetch, ahead of the tests, what the end-to-end tests would otherwise fetch on first use while the clock runs:
# the ARM tools (cross g++, qemu-user 10, debootstrap), Debian's Chromium, the registry binary and the cached arm64
# root filesystem. `make test` starts this in the background before it installs and builds: apt and debootstrap
# wait on the network and dpkg, not on the CPU the llama.cpp builds use, so on a fresh machine they cost no wall time.
#
# Each part is on its own: one that fails is reported and the others still run. Nothing here is a test: the tests
# check for each tool themselves and install it, or skip with the reason, exactly as without this script.
# Does nothing when everything is there (a warm machine: about a second). Installing needs root on Debian.
# Usage: platform/install-test-tools.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-tools.sh: not root on Debian: the tests install what they can themselves, or skip"
  exit 0
fi
step() {
  local name=$1 t0=$SECONDS
  shift
  if "$@" >"build/test-tools-$name.log" 2>&1; then
    echo "$name: ready ($((SECONDS - t0)) s)"
  else
    echo "$name: FAILED (exit $?; the tests will try again); last lines:"
    tail -5 "build/test-tools-$name.log" | sed 's/^/  /'
  fi
}
mkdir -p build
# apt steps one after the other: dpkg takes one lock
step chromium bash platform/install-chromium.sh
step registry bash platform/install-registry.sh
# the ARM tools are installed by the same check the emulated-device tests run first; the root filesystem only
# where that check finds the device can be emulated here (binfmt_misc, overlay mounts)
step arm-rootfs python3 -c '
from tests.e2e.arm_device import arm_tools_problem
problem = arm_tools_problem()
if problem:
    print("no emulated device here:", problem)
else:
    from tests.e2e.arm_rootfs import cached_rootfs
    print(cached_rootfs())
'
