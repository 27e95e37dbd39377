#!/usr/bin/env bash
# The serving benchmark's standard runs against one OpenAI-compatible server (serpent serve,
# llama-server, ...), so that every server gets the same prompts and the same load:
#
#   bench/serve_sweep.sh URL LABEL OUTDIR VOCAB [sweep|mixed|all] [SETTINGS]
#
#   sweep  512-token prompts, 128 tokens out, streamed, at 1, 32, 128 and 256 closed-loop
#          clients (SWEEP_CLIENTS), two requests a client (at least 8; no new ones after
#          SWEEP_CAP_S seconds) -> OUTDIR/serve-LABEL.json
#   mixed  latency under mixed load: 64 clients at 512/128 alone (the decode-only reference,
#          -> mixed-LABEL-decode.json), 16K-token prompts alone (prefill unloaded,
#          -> mixed-LABEL-long.json), then both at once for MIXED_S seconds
#          (-> mixed-LABEL.json); bench/plot_serve.py --mixed checks the two goals on them
#
# MIXED_BASELINES=0 skips the two reference runs (when another label's serve them).
# VOCAB: random prompt ids are drawn below it. SETTINGS: how the server was started (recorded).
# SERVE_BENCH_PY: the python to run the client with (default python3); SERPENT_COMMIT: the
# commit recorded (default: git rev-parse of this checkout).
set -euo pipefail
url=$1 label=$2 out=$3 vocab=$4 what=${5:-all} settings=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
py=${SERVE_BENCH_PY:-python3}
clients=${SWEEP_CLIENTS:-1,32,128,256}
cap=${SWEEP_CAP_S:-60}
mixed_clients=${MIXED_CLIENTS:-64}
long_len=${MIXED_LONG:-16384}
mixed_s=${MIXED_S:-30}
mkdir -p "$out"
bench() { PYTHONUNBUFFERED=1 "$py" "$here/serve_bench.py" --base-url "$url" --label "$label" \
    --vocab-size "$vocab" --server-settings "$settings" --wait-ready 600 \
    ${SERPENT_COMMIT:+--commit "$SERPENT_COMMIT"} "$@"; }

if [ "$what" = sweep ] || [ "$what" = all ]; then
    bench --input-len 512 --output-len 128 --concurrency "$clients" --prompts-per-client 2 \
        --num-prompts 8 --duration "$cap" --result-json "$out/serve-$label.json"
fi
if [ "$what" = mixed ] || [ "$what" = all ]; then
    if [ "${MIXED_BASELINES:-1}" = 1 ]; then
        bench --input-len 512 --output-len 128 --concurrency "$mixed_clients" \
            --prompts-per-client 1000 --duration 20 --result-json "$out/mixed-$label-decode.json"
        bench --group "name=long,clients=1,input=$long_len,output=1,prompts=3" --no-warmup \
            --result-json "$out/mixed-$label-long.json"
    fi
    bench --group "name=short,clients=$mixed_clients,input=512,output=128" \
        --group "name=long,clients=1,input=$long_len,output=1" --duration "$mixed_s" \
        --result-json "$out/mixed-$label.json"
fi
