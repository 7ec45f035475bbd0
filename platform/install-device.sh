#!/usr/bin/env bash
# Install tursid on a device (Raspberry Pi 4/5, Jetson, any systemd Linux) as a service: serving only,
# no torch. Models arrive as bundles built on a workstation (`tursi build --target rpi5 ...; tursi push`).
#
# Usage: sudo platform/install-device.sh [--prefix /opt/tursi] [--listen 0.0.0.0:8765] [--source DIR|SPEC]
#                                        [--dry-run]
#   --source   what pip installs (default: this checkout); --dry-run prints the steps and changes nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/tursi
listen=0.0.0.0:8765
source=$(dirname "$here")
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --listen) listen=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install-device.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

run() { echo "+ $*"; if [ "$dry" = 0 ]; then "$@"; fi; }

if [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install-device.sh: run it as root (sudo), or with --dry-run to see the steps" >&2
  exit 77
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install-device.sh: Python 3.11 or newer is needed (python3 is $(python3 -V 2>&1))" >&2
  exit 69
}
echo "installing tursid for $(uname -m) into $prefix, state in /var/lib/tursi, control API on $listen"

id tursi >/dev/null 2>&1 || run useradd --system --home-dir /var/lib/tursi --shell /usr/sbin/nologin tursi
run install -d -o tursi -g tursi -m 0750 /var/lib/tursi
run python3 -m venv "$prefix/venv"
run bash "$here/install-llama-cpp.sh" "$prefix/venv/bin/python"
run "$prefix/venv/bin/pip" install "$source[serve]"
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
