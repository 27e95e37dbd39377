#!/usr/bin/env bash
# serpent generate on the GPU: greedy text prompts through the CUDA backend reproduce
# transformers' continuation up to the first near-tie of the reference (bf16 activations move
# logits by ~1e-2, so ties are looser than on the CPU), and sampling with a seed is repeatable.
#   test_cli_gpu.sh SERPENT_BINARY TESTS_DIR
set -u
bin=$1
fx=$2/fixtures/nemotron_h_spm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
python3 "$2/text_cases.py" "$fx/reference.json" "$tmp" 0.25
compared=0
for f in "$tmp"/case_*.txt; do
  want=$(cat "${f%.txt}.ids")
  n=$(wc -w <<<"$want")
  [ "$n" -gt 0 ] || continue
  got=$("$bin" generate --model "$fx" --prompt "$(cat "$f")" --max-tokens "$n" --temperature 0 \
        --print-ids --ignore-eos --backend cuda 2>"$tmp/err")
  [ "$got" = "$want" ] || fail "text prompt $(cat "$f"): got '$got', want '$want' ($(cat "$tmp/err"))"
  compared=$((compared + n))
done
[ "$compared" -ge 5 ] || fail "only $compared tokens compared"
a=$("$bin" generate --model "$fx" --prompt "Hello" --max-tokens 40 --seed 5 --top-p 0.9 --print-ids --backend cuda 2>/dev/null)
b=$("$bin" generate --model "$fx" --prompt "Hello" --max-tokens 40 --seed 5 --top-p 0.9 --print-ids --backend cuda 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "same seed on the GPU, different samples"
grep -q 'tokens/s' "$tmp/err" || fail "no speed report"
[ "$failures" -eq 0 ] || exit 1
echo "GPU CLI checks passed ($compared greedy tokens compared)"
