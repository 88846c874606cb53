#!/usr/bin/env bash
# Adds Debian's source archive (deb-src) for this release when no deb-src entry exists, so
# `apt-get source firmware-microbit-micropython` works (firmware/microbit/hexbuild).
# Idempotent. APT_SOURCES_DIR (default /etc/apt/sources.list.d) is where the entry goes.
set -euo pipefail
dir="${APT_SOURCES_DIR:-/etc/apt/sources.list.d}"
if grep -rqsE '^(deb-src[[:space:]]|Types:.*deb-src)' /etc/apt/sources.list "$dir"; then
  exit 0
fi
. /etc/os-release
codename="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
sudo=""
[ "$(id -u)" -eq 0 ] || [ -w "$dir" ] || sudo="sudo"
echo "adding Debian deb-src entries for $codename to $dir/edgegov-deb-src.sources"
$sudo tee "$dir/edgegov-deb-src.sources" >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: $keyring
SRC
