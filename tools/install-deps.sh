#!/usr/bin/env bash
# Installs what serpent needs to build and test on Debian 12 (run as root, or with sudo).
# Only packages that are missing are installed, so a second run costs nothing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 curl
      libcjson-dev libsentencepiece-dev sentencepiece
      libopenblas0-openmp libgomp1)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
