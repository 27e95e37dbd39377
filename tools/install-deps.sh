#!/usr/bin/env bash
# Installs what serpent needs to build and test on Debian 12 (run as root, or with sudo).
# Only packages that are missing are installed, so a second run costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential cmake pkg-config python3 curl nginx-light
      libcjson-dev libsentencepiece-dev sentencepiece libmicrohttpd-dev libpcre2-dev libutf8proc-dev
      libopenblas0-openmp libgomp1 python3-aiohttp)
# node and npm run the reference implementations in tests; a machine may already have them
# from elsewhere (NodeSource), whose nodejs package conflicts with Debian's npm
command -v npm >/dev/null || pkgs+=(nodejs npm)
# The Megatron converter (tools/convert_megatron.py) and its test read and write torch pickles:
# python3-torch, for tests only (~150 MB to download, ~620 MB installed, well under a minute);
# tools/serve.sh leaves it out with the other test references (SERPENT_SKIP_NPM=1).
[ "${SERPENT_SKIP_NPM:-0}" = 1 ] || pkgs+=(python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  # no service may start during the install (nginx would take port 80): tests start their own
  guard=/usr/sbin/policy-rc.d
  made_guard=0
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null && $sudo chmod +x "$guard"
    made_guard=1
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$made_guard" = 1 ] && $sudo rm -f "$guard"
fi

# Test references that run on node (chat templates, tokenizers, the openai client): npm
# packages pinned by each folder's package-lock.json, installed once.
if [ "${SERPENT_SKIP_NPM:-0}" != 1 ]; then
  for d in tests/*/; do
    # again when package-lock.json changed since the last npm ci
    if [ -f "$d/setup.sh" ] && { [ ! -d "$d/node_modules" ] ||
      { [ -f "$d/package-lock.json" ] && [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; }; }; then
      bash "$d/setup.sh"
    fi
  done
fi
