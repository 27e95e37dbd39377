#!/usr/bin/env bash
# Builds tests/gpu/attention_check and bench/attention_bench without CMake or the engine's
# third-party dependencies: only the engine files the CPU reference needs (status, dtype, the
# CPU backend; OpenBLAS is loaded at run time), the attention kernels and the two programs.
# Usage: tests/gpu/build_attention.sh [SOURCE_ROOT] [BUILD_DIR]
set -euo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
B=${2:-$ROOT/build-attn}
ARCH=${SERPENT_CUDA_GENCODE:--gencode=arch=compute_90a,code=sm_90a}
mkdir -p "$B"
CFLAGS="-O3 -g -std=c11 -Wall -Wextra -D_GNU_SOURCE -fopenmp -I$ROOT/engine"
pids=()
for f in status dtype cpu_blas cpu_backend cpu_mamba cpu_attention sampler; do
    gcc $CFLAGS -c "$ROOT/engine/$f.c" -o "$B/engine_$f.o" & pids+=($!)
done
NVFLAGS="$ARCH -O3 -std=c++17 -lineinfo -Xcompiler -Wall,-Wextra -I$ROOT/engine -I$ROOT/kernels -I$ROOT/tests/gpu"
nvcc $NVFLAGS -Xptxas -v -c "$ROOT/kernels/attention.cu" -o "$B/attention.o" 2> "$B/ptxas.txt" & pids+=($!)
nvcc $NVFLAGS -c "$ROOT/tests/gpu/attention_check.cu" -o "$B/attention_check.o" & pids+=($!)
nvcc $NVFLAGS -c "$ROOT/bench/attention_bench.cu" -o "$B/attention_bench.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
nvcc $ARCH -o "$B/attention_check" "$B/attention_check.o" "$B/attention.o" "$B"/engine_*.o \
    -Xcompiler -fopenmp -ldl -lm
nvcc $ARCH -o "$B/attention_bench" "$B/attention_bench.o" "$B/attention.o" "$B"/engine_*.o \
    -Xcompiler -fopenmp -lcublas -ldl -lm
echo "built $B/attention_check $B/attention_bench"
