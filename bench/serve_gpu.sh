#!/usr/bin/env bash
# serpent's side of the serving benchmark on the GPU machine: builds serpent with CUDA, runs
# `serpent bench` on the checkpoint, serves it and runs bench/serve_sweep.sh (the 1/32/128/256
# client sweep and the mixed-load case) with the default scheduler, then the mixed case again
# with each setting of --itl-slowdown in SERVE_SLOWDOWNS (default "0": the budget off).
#
#   bench/serve_gpu.sh MODEL_DIR OUTDIR
#
# MODEL_DIR: a checkpoint (bench/make_random_checkpoint.py makes the 8B one). Libraries the
# machine lacks come from .devdeps/sysroot (/work/shared/tools/device-sysroot.sh) when present.
# Takes ~4 minutes after the build on an H200. Env: SERVE_PORT (8000), SERVE_ARGS (more flags
# for every serve), SERVE_FLAGS (in place of the sizes below), SERVE_SLOWDOWNS, SERVE_BENCH
# (1: run serpent bench first), SERVE_BACKEND (cuda), BUILD_DIR (build-serve), SERVE_BUILD_ONLY
# (1: build, then stop), SERPENT_COMMIT (recorded; default git rev-parse).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(cd "$1" && pwd) out=$2
mkdir -p "$out"
out=$(cd "$out" && pwd)
port=${SERVE_PORT:-8000}
build=${BUILD_DIR:-build-serve}
backend=${SERVE_BACKEND:-cuda}
commit=${SERPENT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export SERPENT_COMMIT=$commit
vocab=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['vocab_size'])" "$model/config.json")
libpath=
cmake_extra=()
if [ -d .devdeps/sysroot/usr ]; then
    cmake_extra=(-DCMAKE_PREFIX_PATH="$PWD/.devdeps/sysroot/usr")
    libpath=$PWD/.devdeps/sysroot/usr/lib/x86_64-linux-gnu
fi
t0=$(date +%s)
if [ ! -x "$build/serpent" ]; then
    cuda=ON
    [ "$backend" = cuda ] || cuda=OFF
    cmake -S . -B "$build" -DSERPENT_CUDA=$cuda -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
        "${cmake_extra[@]}" >"$out/serpent-build.log" 2>&1
    cmake --build "$build" -j "$(nproc)" --target serpent >>"$out/serpent-build.log" 2>&1 ||
        { tail -30 "$out/serpent-build.log"; exit 1; }
fi
echo "serve_gpu: serpent built ($(($(date +%s) - t0)) s)"
[ "${SERVE_BUILD_ONLY:-0}" = 1 ] && exit 0
run_serpent() { LD_LIBRARY_PATH=${libpath}${libpath:+:}${LD_LIBRARY_PATH:-} "$build/serpent" "$@"; }

if [ "${SERVE_BENCH:-1}" = 1 ]; then
    run_serpent bench --model "$model" --backend "$backend" --prompt-tokens 512,8192 \
        --gen-tokens 128 --batch 1,32,128,256 --reps 3 --commit "$commit" --json "$out/bench-serpent-gpu.json" |
        tee "$out/bench-serpent-gpu.md"
fi

# the flags every serve gets: 256 slots, room for the 16K prompts, prefill-only steps of 16K
base_flags=(--model "$model" --port "$port" --backend "$backend"
            ${SERVE_FLAGS:---max-num-seqs 256 --max-model-len 16640 --max-num-batched-tokens 16384}
            ${SERVE_ARGS:-})
pid=
start() {
    run_serpent serve "${base_flags[@]}" "$@" >>"$out/serpent-serve.log" 2>&1 &
    pid=$!
}
stop() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap stop EXIT

start
bench/serve_sweep.sh "http://127.0.0.1:$port" serpent "$out" "$vocab" all \
    "serpent serve ${base_flags[*]} (commit $commit)"
stop
for s in ${SERVE_SLOWDOWNS-0}; do
    start --itl-slowdown "$s"
    MIXED_BASELINES=0 bench/serve_sweep.sh "http://127.0.0.1:$port" "serpent-slowdown$s" "$out" "$vocab" mixed \
        "serpent serve ${base_flags[*]} --itl-slowdown $s (commit $commit)"
    stop
done
# the baselines (decode alone, prefill alone) do not depend on the budget: the default run's
for l in serpent ${SERVE_SLOWDOWNS-0}; do
    [ "$l" = serpent ] || l=serpent-slowdown$l
    python3 bench/plot_serve.py --mixed "$out/mixed-serpent-decode.json" \
        "$out/mixed-serpent-long.json" "$out/mixed-$l.json" || true
done | tee "$out/mixed-serpent-check.txt"
echo "serve_gpu: done in $(($(date +%s) - t0)) s; results in $out"
