#!/bin/bash
# How tokenizer.model was made: a 333-piece BPE SentencePiece model (the vocab_size of
# tests/fixtures/nemotron_h_pattern) with byte fallback, so random-weight generations include
# multi-byte UTF-8 split over several tokens. Needs Debian's `sentencepiece` package.
set -euo pipefail
out=${1:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
  cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 | head -c 300000
  for _ in $(seq 1 50); do
    echo "Café naïve résumé — über straße. 日本語のテキスト。 emoji 🐍 serpent 🙂 Ελληνικά кириллица"
  done
} >"$tmp/corpus.txt"
spm_train --input="$tmp/corpus.txt" --model_prefix="$tmp/tok" --vocab_size=333 --model_type=bpe \
  --byte_fallback=true --character_coverage=0.98 --bos_id=1 --eos_id=2 --unk_id=0 --pad_id=-1 \
  --normalization_rule_name=identity
cp "$tmp/tok.model" "$out/tokenizer.model"
