#!/usr/bin/env bash
# Installs the system packages the test suite needs (Debian), when they are missing.
# Runs as root (CI) or through sudo. Idempotent: does nothing when all are present.
set -euo pipefail
packages=(mosquitto mosquitto-clients qemu-system-arm firmware-microbit-micropython
          chromium  # chromium: the incident report's browser test (driven by Playwright)
          postgresql)  # postgresql: the fleet archive's tests start a real server (initdb)
# npm fetches the report's plotly.js basic bundle (make install). Debian's npm only where no
# npm is on PATH: a machine with Node.js from elsewhere already has its own.
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The test suite starts its own broker; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
