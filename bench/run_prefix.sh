#!/usr/bin/env bash
# The prefix-cache benchmark on the GPU machine: builds bench_prefix with CUDA and runs both
# workloads (multi-turn chat, shared documents) with the cache off and on, on random weights of
# the 8B hybrid. The JSON goes to $OUT (or bench/results/), the table to stdout.
# Usage: bench/run_prefix.sh [bench_prefix args]   (e.g. --prefix-cache-gb 16)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
cmake -S . -B build-bench -DSERPENT_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)" --target bench_prefix >/dev/null
commit=${SERPENT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
build-bench/bench/bench_prefix --config bench/configs/hybrid-8b --backend cuda \
  --json "$out/prefix-$(date +%Y%m%d).json" --commit "$commit" "$@"
