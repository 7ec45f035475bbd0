#!/usr/bin/env bash
# Cross-compile llama-cpp-python for the pack targets the emulated-device tests use (rpi5, rpi4), on CPU time the
# tests leave idle. `make test` starts this in the background just before pytest; the tests reach the ARM device
# after the unit and integration tiers (about 15 minutes in, with a core idle about half of that time), and
# `tursi pack` then finds the wheels cached, or waits on the build's lock for the rest of it.
#
# Why SCHED_IDLE (chrt --idle) and not nice 19: an idle-class task runs only when no other task wants the core and
# is preempted as soon as one does, so a test's llama.cpp threads never wait behind a compile (measured here: the
# SmolLM2 greedy rate alone 73-79 tok/s, beside two idle-class compiles 86-94 tok/s). A fresh machine gains the
# ~6 minutes of the two cross builds; a warm one finds both cached in a second.
#
# Does nothing where the tests would not build them: no cross compiler (install-test-tools.sh installs it only
# where the device can be emulated), or both wheels cached.
# Usage: platform/prebuild-arm-wheels.sh PYTHON        (the venv's python: it reads the targets from tursi)
set -uo pipefail
py=${1:?usage: prebuild-arm-wheels.sh PYTHON}
here=$(dirname "$0")
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v ninja >/dev/null; then
  echo "prebuild-arm-wheels.sh: no cross compiler or ninja here: nothing to prebuild"
  exit 0
fi
if ! chrt --idle 0 true 2>/dev/null; then
  echo "prebuild-arm-wheels.sh: no idle scheduling class here (chrt --idle): the tests build the wheels themselves"
  exit 0
fi
t0=$SECONDS
for target in rpi5 rpi4; do
  arch=$("$py" -c "from tursi.pack.targets import pack_target; print(pack_target('$target').arm_arch)") || exit 1
  if chrt --idle 0 bash "$here/cross-build-llama-cpp.sh" "$arch" "$py" >/dev/null; then
    echo "prebuild-arm-wheels.sh: $target ($arch) ready at $((SECONDS - t0)) s"
  else
    echo "prebuild-arm-wheels.sh: $target ($arch) FAILED (the tests will build it again and show why)"
  fi
done
