#!/usr/bin/env bash
# Builds serpent with CUDA on the GPU machine and runs the kernel benchmarks; results go to
# bench/results/ (or $OUT when set). Usage: bench/run_gpu.sh [cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
cmake -S . -B build-bench -DSERPENT_CUDA=ON -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build-bench -j "$(nproc)" --target bench_kernels bench_model attention_bench bench_mamba1 >/dev/null
clocks=$(nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv,noheader | head -1)
commit=${SERPENT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
day=$(date +%Y%m%d)
build-bench/bench_kernels --json "$out/kernels-$day.json" --commit "$commit" --clocks "$clocks"
build-bench/attention_bench --json "$out/attention-$day.json" --commit "$commit"
# the whole model against the ceilings just measured
bw=$(python3 -c "import json;print(json.load(open('$out/kernels-$day.json'))['copy_bandwidth_bytes_per_s'])")
peak=$(python3 -c "import json;print(json.load(open('$out/kernels-$day.json'))['bf16_gemm_flops_per_s'])")
build-bench/bench_model --json "$out/model-$day.json" --commit "$commit" --clocks "$clocks" \
  --bandwidth "$bw" --peak "$peak"
# Mamba-1 (issue 13): the selective scan and conv1d at Mamba-2.8B's shape, then the whole model
build-bench/bench_mamba1 --json "$out/mamba1-kernels-$day.json" --commit "$commit" --clocks "$clocks"
build-bench/bench_model --config bench/configs/mamba-2.8b --json "$out/model-mamba-2.8b-$day.json" \
  --commit "$commit" --clocks "$clocks" --bandwidth "$bw" --peak "$peak"
