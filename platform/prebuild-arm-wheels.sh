#!/usr/bin/env bash
# Cross-compile llama-cpp-python for the pack targets the emulated-device tests use (rpi5, rpi4), on CPU time the
# tests leave idle. `make test` starts this in the background just before pytest; the tests reach the ARM device
# after the unit and integration tiers (about 15 minutes in, with a core idle about half of that time), and
# `tursi pack` then finds the wheels cached, or waits on the build's lock for the rest of it.
#
# Why it cannot slow the tests: Linux shares the CPU first between sessions ("autogroups", on by default), then
# between the tasks of each, so a session's own nice or idle class does not shelter the tursid and workers the
# tests start (each in its own session): beside a session of idle-class compiles, a worker's SmolLM2 greedy rate
# fell from 93 to 7 tok/s (measured here; llama.cpp's threads wait on each other at every layer, so losing one
# core for a slice stalls both). So `make test` starts this in its own session, whose autogroup nice is set to 19
# here (weight 15 against 1024: beside the same compiles the worker kept 88 tok/s), and the compiles also run in
# the idle class within it. A fresh machine gains the ~6 minutes of the two cross builds; a warm one finds both
# cached in a second.
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
if [ "$(ps -o sid= -p $$ | tr -d ' ')" != "$$" ]; then
  exec setsid --wait bash "$0" "$@"  # its own session: the nice 19 below must not reach the caller's
fi
if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo 0)" = 1 ] \
  && ! { echo 19 >/proc/self/autogroup; } 2>/dev/null; then
  echo "prebuild-arm-wheels.sh: cannot lower this session's CPU share (/proc/self/autogroup): the tests build the" \
       "wheels themselves"
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
