#!/usr/bin/env bash
# Install tursid on a device (Raspberry Pi 4/5, Jetson, any systemd Linux) as a service: serving only,
# no torch. Models arrive as bundles built on a workstation (`tursi build --target rpi5 ...; tursi push`).
#
# Usage: sudo install-device.sh [--pack FILE|DIR] [--python PY] [--prefix /opt/tursi] [--listen 0.0.0.0:8765]
#                               [--source DIR|SPEC] [--no-service] [--dry-run]
#   --pack        install offline from a runtime pack (`tursi pack --target rpi5` on the workstation): no compiler,
#                 no network; the pack is checked against this device (checksums, CPU, Python, glibc) first
#   --python      the interpreter to build the venv from (default python3; a pack names the version it needs)
#   --source      without --pack: what pip installs (default: this checkout); llama.cpp is compiled here
#   --no-service  install the venv only: no user, no systemd unit (containers, chroots, trying it out)
#   --dry-run     print the steps and change nothing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/tursi
listen=0.0.0.0:8765
source=$(dirname "$here")
python=python3
pack=
service=1
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --listen) listen=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --pack) pack=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --no-service) service=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install-device.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

run() { echo "+ $*"; if [ "$dry" = 0 ]; then "$@"; fi; }

if [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install-device.sh: run it as root (sudo), or with --dry-run to see the steps" >&2
  exit 77
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
  echo "install-device.sh: Python 3.11 or newer is needed ($python is $("$python" -V 2>&1))" >&2
  exit 69
}
"$python" -c 'import ensurepip, venv' 2>/dev/null || {
  echo "install-device.sh: $python cannot make a venv (Debian/Ubuntu: apt-get install python3-venv," \
       "or python3.11-venv for --python python3.11)" >&2
  exit 69
}

if [ -n "$pack" ]; then
  # A pack file is unpacked into a scratch folder first; nothing is installed before the check passes.
  if [ -f "$pack" ]; then
    # only plain files and folders under tursi-pack/ (no links, devices, absolute or .. paths) are unpacked
    # (listed into variables first: `tar | grep -q` under pipefail can fail on SIGPIPE and hide a match)
    kinds=$(tar -tvf "$pack" | cut -c1 | sort -u)
    names=$(tar -tf "$pack")
    if grep -qv '^[-d]$' <<<"$kinds" || grep -Eqv '^tursi-pack(/|$)' <<<"$names" ||
       grep -Eq '(^|/)\.\.(/|$)' <<<"$names"; then
      echo "install-device.sh: $pack is not a runtime pack (entries other than files and folders under tursi-pack/)" >&2
      exit 65
    fi
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    tar -xf "$pack" -C "$scratch" --no-same-owner --no-same-permissions
    pack=$scratch/tursi-pack
  fi
  [ -f "$pack/pack.json" ] && [ -f "$pack/verify-pack.py" ] || {
    echo "install-device.sh: $pack is not a runtime pack (no pack.json)" >&2
    exit 65
  }
  # the verifier of this checkout when there is one, else the pack's own copy (an integrity check either way:
  # packs are not signed; compare the file's sha256 with the one `tursi pack` printed)
  verifier=$here/../tursi/pack/verify.py
  [ -f "$verifier" ] || verifier=$pack/verify-pack.py
  "$python" "$verifier" "$pack"
fi
echo "installing tursid for $(uname -m) into $prefix, state in /var/lib/tursi, control API on $listen"

if [ "$service" = 1 ]; then
  id tursi >/dev/null 2>&1 || run useradd --system --home-dir /var/lib/tursi --shell /usr/sbin/nologin tursi
  run install -d -o tursi -g tursi -m 0750 /var/lib/tursi
fi
run "$python" -m venv "$prefix/venv"
if [ -n "$pack" ]; then
  # --no-index: pip never looks at the network; every wheel, llama-cpp-python included, comes from the pack
  run "$prefix/venv/bin/pip" install --no-index --find-links "$pack/wheels" --disable-pip-version-check \
    "$(ls "$pack"/wheels/tursi-*.whl)[serve]"
else
  run bash "$here/install-llama-cpp.sh" "$prefix/venv/bin/python"
  run "$prefix/venv/bin/pip" install "$source[serve]"
fi
if [ "$service" = 0 ]; then
  echo "done (no service). Start it with: $prefix/venv/bin/tursid --listen $listen"
  exit 0
fi
run ln -sf "$prefix/venv/bin/tursi" /usr/local/bin/tursi
unit=/etc/systemd/system/tursid.service
echo "+ write $unit and /etc/default/tursid"
if [ "$dry" = 0 ]; then
  sed "s|@PREFIX@|$prefix|g" "$here/systemd/tursid.service" >"$unit"
  printf 'TURSID_ARGS="--listen %s"\n' "$listen" >/etc/default/tursid
fi
# the token is printed here, once, on the installer's terminal (not in the journal); the certificate too
run runuser -u tursi -- env TURSI_HOME=/var/lib/tursi "$prefix/venv/bin/tursid" --listen "$listen" --init
run systemctl daemon-reload
run systemctl enable --now tursid
cat <<MSG
done. On the workstation:
  tursi context create device --host https://<this device's address>:${listen##*:} \\
      --token <the token above> --tls-fingerprint <the sha256 above>
  tursi context use device && tursi push model.tursi
On this device: sudo -u tursi env TURSI_HOME=/var/lib/tursi tursi ps
MSG
