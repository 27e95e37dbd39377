#!/bin/bash
# Installs what the server tests need (CI calls this before building): libmicrohttpd and the
# other build dependencies, curl, node + npm, and the client libraries the tests drive: openai,
# @langchain/openai and the AI SDK (npm ci from package-lock.json into tests/server/node_modules).
# Idempotent; run as root or with sudo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

pkgs=(cmake gcc g++ make pkg-config libcjson-dev libsentencepiece-dev libmicrohttpd-dev
  libopenblas-dev curl ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
# node and npm: Debian's packages unless a node (e.g. one that bundles npm) is there already
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

cd "$here"
npm ci --no-audit --no-fund
node --input-type=module -e "await Promise.all(['openai', '@langchain/openai', 'ai', '@ai-sdk/openai'].map((m) => import(m))); console.log('clients ready')"
