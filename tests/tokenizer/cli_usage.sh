#!/usr/bin/env bash
# `serpent tokenize` as a user meets it: --help, usage errors (exit 2), a missing folder (exit 1),
# special tokens in the text, --add-special-tokens, --decode, stdin.  cli_usage.sh SERPENT_BIN DIR
set -uo pipefail
bin="$1" dir="$2" fx="$2/fixtures/tiny_bpe" bad=0
expect() { # what expected actual
  if [ "$2" != "$3" ]; then echo "FAIL $1: expected [$2], got [$3]" >&2; bad=1; fi
}
"$bin" tokenize --help > /dev/null; expect "--help exit" 0 $?
"$bin" tokenize 2> /dev/null; expect "no --model exit" 2 $?
"$bin" tokenize --model "$fx" --bogus 2> /dev/null; expect "unknown flag exit" 2 $?
"$bin" tokenize --model /nonexistent 2> /dev/null < /dev/null; expect "missing folder exit" 1 $?
out=$(printf 'hello world\nthe world<|endoftext|>hello\n\n' | "$bin" tokenize --model "$fx")
expect "encode" $'257 259 111 267\n116 257 267 300 257 259 111\n' "$out"$'\n'
out=$(printf 'hello\n' | "$bin" tokenize --model "$fx" --add-special-tokens)
expect "add special" "300 257 259 111 300" "$out"
out=$(printf '257 259 111 267\n300 257\n' | "$bin" tokenize --model "$fx" --decode)
expect "decode" $'hello world\n<|endoftext|>he' "$out"
out=$(printf '300 257\n' | "$bin" tokenize --model "$fx" --decode --skip-special-tokens)
expect "decode skipping specials" "he" "$out"
printf '1 x 2\n' | "$bin" tokenize --model "$fx" --decode > /dev/null 2>&1; expect "bad id line exit" 1 $?
printf 'hello\n' > "${TMPDIR:-/tmp}/srp_cli_in.txt"
out=$("$bin" tokenize --model "$fx" --file "${TMPDIR:-/tmp}/srp_cli_in.txt")
expect "--file" "257 259 111" "$out"
[ $bad = 0 ] && echo "tokenizer.cli_usage: ok"
exit $bad
