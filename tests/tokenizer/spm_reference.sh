#!/usr/bin/env bash
# Compares serpent's tokenizer.model path with the SentencePiece library's own command-line
# encoder and decoder, on every corpus line:  spm_reference.sh SERPENT_BIN WORK_DIR {bpe|unigram}
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1" work="$2/spm_$3" model="$here/spm/$3"
fail() { echo "FAIL tokenizer.spm.$3: $*" >&2; exit 1; }
command -v spm_encode >/dev/null || fail "spm_encode is missing (apt-get install sentencepiece)"
command -v node >/dev/null || fail "node is not installed (run tests/tokenizer/setup.sh)"
rm -rf "$work" && mkdir -p "$work"
node "$here/make_corpus.js" "$work/corpus.txt" 24000
spm_encode --model="$model/tokenizer.model" --output_format=id < "$work/corpus.txt" > "$work/ref.ids"
"$bin" tokenize --model "$model" --file "$work/corpus.txt" > "$work/ours.ids" || fail "serpent tokenize failed"
cmp -s "$work/ours.ids" "$work/ref.ids" || fail "ids differ: $(diff "$work/ours.ids" "$work/ref.ids" | grep -c '^<') lines"
spm_decode --model="$model/tokenizer.model" --input_format=id < "$work/ref.ids" > "$work/ref.dec"
"$bin" tokenize --model "$model" --decode --file "$work/ref.ids" > "$work/ours.dec" || fail "serpent tokenize --decode failed"
cmp -s "$work/ours.dec" "$work/ref.dec" || fail "decode differs: $(diff "$work/ours.dec" "$work/ref.dec" | grep -c '^<') lines"
echo "tokenizer.spm.$3: $(wc -l < "$work/corpus.txt") lines: ids and decode identical to spm_encode / spm_decode"
