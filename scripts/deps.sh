#!/usr/bin/env bash
# Install the Debian 12 packages est-coaps builds, runs and tests with.
# Usage: scripts/deps.sh [--fuzz]   (needs root, or sudo)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libcoap3-dev libcoap3-bin libgnutls28-dev gnutls-bin libtasn1-6-dev libtasn1-bin openssl
  libsqlite3-dev sqlite3 libcjson-dev libcbor-dev libcmocka-dev
  mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients
  python3 python3-cbor2 python3-jsonschema valgrind procps
  libmicrohttpd-dev libcurl4-gnutls-dev softhsm2 libsystemd-dev curl python3-prometheus-client
  libpq-dev postgresql-15
  lintian dpkg-dev fakeroot systemd man-db groff-base
  strongswan-pki libstrongswan-extra-plugins
)
[ "${1:-}" = "--fuzz" ] && pkgs+=(clang)
# The interop client (tests/interop/node) runs on Node with npm packages
# from its lock file. A Node that did not come from Debian (one that ships
# its own npm) is fine too.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  pkgs+=(nodejs npm)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: run as root (or install sudo)" >&2; exit 1; }
  sudo="sudo"
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once.
$sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${missing[@]}"
}
