#!/usr/bin/env bash
# apt-get, one at a time: `make test` installs Debian packages from two jobs at once (CMake for the llama.cpp build,
# Chromium and the ARM tools in the background), and a second apt-get fails at once on dpkg's lock. Ours queue on
# one lock file; any other apt-get running is waited for (DPkg::Lock::Timeout) instead of failing.
# Usage: platform/apt.sh ARGS...      (as apt-get ARGS...)
set -euo pipefail
exec flock /var/lock/tursi-apt.lock apt-get -o DPkg::Lock::Timeout=900 "$@"
