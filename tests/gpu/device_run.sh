#!/usr/bin/env bash
# One call on a GPU machine: build, disassembly counts, the correctness check, the benchmark,
# optional variants and profiles, then compute-sanitizer on small cases. Most of what it prints
# is also kept under $OUT (at most 8 files). Environment:
#   ATTN_VARIANTS="NAME:FLAG,FLAG ..."  kernels rebuilt with other compile-time settings, each
#                                       checked and benchmarked by its own binaries
#   ATTN_NCU="KERNEL_REGEX:N:BENCH_CASE ..." Nsight Compute on the first N matching launches
#   ATTN_NO_SANITIZER=1                 skip compute-sanitizer
# Usage: tests/gpu/device_run.sh [attention_check args...]   (from any directory)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${ATTN_BUILD:-/tmp/attn-build}
OUT=${OUT:-/tmp/attn-out}
ARCHFLAGS=${SERPENT_CUDA_GENCODE:--gencode=arch=compute_90a,code=sm_90a}
COMMIT=$(cat "$ROOT/COMMIT" 2>/dev/null || echo unknown)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu \
    --format=csv | tee "$OUT/env.txt"
if ! ldconfig -p | grep -q 'libopenblas.so.0'; then
    # The CPU backend dlopens OpenBLAS at creation; its attention never calls sgemm.
    echo 'void cblas_sgemm(void) {}' > /tmp/sgemm_stub.c
    gcc -shared -fPIC -o /tmp/libsgemm_stub.so /tmp/sgemm_stub.c
    export SERPENT_OPENBLAS=/tmp/libsgemm_stub.so
    echo "no OpenBLAS here: CPU backend created with an sgemm stub (attention does not use it)"
fi
T0=$(date +%s)
bash "$ROOT/tests/gpu/build_attention.sh" "$ROOT" "$B" 2>&1 | tee -a "$OUT/env.txt" || exit 1
[ -x "$B/attention_check" ] || exit 1
for v in ${ATTN_VARIANTS:-}; do
    n=${v%%:*}
    f=${v#*:}
    f=${f//,/ }
    nvcc $ARCHFLAGS -O3 -std=c++17 -lineinfo -I"$ROOT/engine" -I"$ROOT/kernels" $f -Xptxas -v \
        -c "$ROOT/kernels/attention.cu" -o "$B/attention_$n.o" 2> "$B/ptxas_$n.txt" &&
        nvcc $ARCHFLAGS -o "$B/attention_check_$n" "$B/attention_check.o" "$B/attention_$n.o" \
            "$B"/engine_*.o -Xcompiler -fopenmp -ldl -lm &&
        nvcc $ARCHFLAGS -o "$B/attention_bench_$n" "$B/attention_bench.o" "$B/attention_$n.o" \
            "$B"/engine_*.o -Xcompiler -fopenmp -lcublas -ldl -lm ||
        echo "variant $n failed to build"
done
echo "build: $(($(date +%s) - T0)) s"
grep -E "registers|spill" "$B/ptxas.txt" | paste - - | sed 's/ptxas info *: //g' | tee -a "$OUT/env.txt"
cuobjdump -sass "$B/attention.o" > "$B/sass.txt" 2>&1 &&
    for k in HMMA LDSM LDGSTS MUFU.EX2 LDL STL; do echo "sass $k: $(grep -c "$k" "$B/sass.txt")"; done
timeout 150 "$B/attention_check" "$@" 2>&1 | tee "$OUT/check.txt"
echo "check: $(($(date +%s) - T0)) s"
timeout 60 "$B/attention_bench" --json "$OUT/attention_bench.json" --commit "$COMMIT" 2>&1
echo "bench: $(($(date +%s) - T0)) s"
for v in ${ATTN_VARIANTS:-}; do
    n=${v%%:*}
    [ -x "$B/attention_bench_$n" ] || continue
    echo "== variant $n (${v#*:})"
    grep -E "registers" "$B/ptxas_$n.txt" | sed 's/ptxas info *: //g'
    timeout 100 "$B/attention_check_$n" "$@" 2>&1 | tail -25 >> "$OUT/variants.txt"
    tail -2 "$OUT/variants.txt"
    timeout 60 "$B/attention_bench_$n" --json "$OUT/attention_bench_$n.json" --commit "$COMMIT-$n" 2>&1 |
        tail -10 | tee -a "$OUT/variants.txt"
done
for p in ${ATTN_NCU:-}; do
    k=${p%%:*}
    c=${p##*:}
    n=${p#*:}
    n=${n%%:*}
    echo "== ncu $k (first $n launches) on $c"
    timeout 60 ncu --kernel-name "regex:$k" --launch-count "$n" --section SpeedOfLight \
        --section Occupancy --section LaunchStats --section WarpStateStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        "$B/attention_bench" --only "$c" --runs 1 > "$OUT/ncu_$c.txt" 2>&1
    grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|Block Limit (Shared|Registers)|Waves Per SM|Registers Per|Issue Slots Busy|No Eligible|Memory Throughput" \
        "$OUT/ncu_$c.txt" | head -60
done
if [ -z "${ATTN_NO_SANITIZER:-}" ]; then
    timeout 40 compute-sanitizer --tool memcheck "$B/attention_check" --only mixed_g2_d64_sharp 2>&1 |
        tail -3 | tee "$OUT/sanitizer.txt"
    timeout 40 compute-sanitizer --tool racecheck "$B/attention_check" --only g3_d64_bs5 2>&1 |
        tail -2 | tee -a "$OUT/sanitizer.txt"
fi
echo "total: $(($(date +%s) - T0)) s"
