#!/usr/bin/env bash
# One call on a GPU machine: build, disassembly counts, the correctness check, the benchmark,
# then compute-sanitizer on two small cases. Everything it prints is also kept under $OUT.
# Usage: tests/gpu/device_run.sh [attention_check args...]   (run from any directory)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${ATTN_BUILD:-/tmp/attn-build}
OUT=${OUT:-/tmp/attn-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu \
    --format=csv | tee "$OUT/nvidia-smi.csv"
if ! ldconfig -p | grep -q 'libopenblas.so.0'; then
    # The CPU backend dlopens OpenBLAS at creation; its attention never calls sgemm.
    echo 'void cblas_sgemm(void) {}' > /tmp/sgemm_stub.c
    gcc -shared -fPIC -o /tmp/libsgemm_stub.so /tmp/sgemm_stub.c
    export SERPENT_OPENBLAS=/tmp/libsgemm_stub.so
    echo "no OpenBLAS here: CPU backend created with an sgemm stub (attention does not use it)"
fi
T0=$(date +%s)
bash "$ROOT/tests/gpu/build_attention.sh" "$ROOT" "$B" 2>&1 | tee "$OUT/build.txt" || exit 1
[ -x "$B/attention_check" ] || exit 1
echo "build: $(($(date +%s) - T0)) s"
grep -E "registers|spill" "$B/ptxas.txt" | paste - - | sed 's/ptxas info *: //g' | tee "$OUT/ptxas.txt"
cuobjdump -sass "$B/attention.o" > "$B/sass.txt" 2>&1 &&
    for k in HMMA LDSM LDGSTS MUFU.EX2 LDL STL; do echo "sass $k: $(grep -c "$k" "$B/sass.txt")"; done
timeout 150 "$B/attention_check" "$@" 2>&1 | tee "$OUT/check.txt"
echo "check: $(($(date +%s) - T0)) s"
timeout 60 "$B/attention_bench" --json "$OUT/attention_bench.json" \
    --commit "$(cat "$ROOT/COMMIT" 2>/dev/null || echo unknown)" 2>&1 | tee "$OUT/bench.txt"
echo "bench: $(($(date +%s) - T0)) s"
if [ -z "${ATTN_NO_SANITIZER:-}" ]; then
    timeout 40 compute-sanitizer --tool memcheck "$B/attention_check" --only mixed_g2_d64_sharp 2>&1 |
        tail -4 | tee "$OUT/memcheck.txt"
    timeout 40 compute-sanitizer --tool racecheck "$B/attention_check" --only g3_d64_bs5 2>&1 |
        tail -4 | tee "$OUT/racecheck.txt"
fi
echo "total: $(($(date +%s) - T0)) s"
