#!/usr/bin/env bash
# bench/serve_bench.py against a real serpent serve (the shipped model, CPU): every streamed
# token is counted (usage and chunks agree with max_tokens under ignore_eos), the closed-loop
# sweep and the mixed groups report what they ran, errors are counted and make the exit code 1,
# and bench/plot_serve.py reads the results (table and the mixed-load check).
#   test_serve_bench.sh SERPENT_BINARY REPO_DIR
set -u
bin=$1 repo=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import aiohttp' || { echo "FAIL: $py has no aiohttp (tools/install-deps.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --model "$repo/models/serpent-tiny" --backend cpu --threads 1 --port "$port" \
    --max-num-seqs 4 --max-model-len 512 >"$tmp/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
sb() { "$py" "$repo/bench/serve_bench.py" --base-url "http://127.0.0.1:$port" --wait-ready 60 "$@"; }

sb --input-len 24 --output-len 8 --concurrency 1,3 --prompts-per-client 2 --label tiny \
    --server-settings "test" --result-json "$tmp/sweep.json" >"$tmp/sweep.out" 2>&1 ||
    fail "sweep: exit $? $(cat "$tmp/sweep.out")"
sb --group name=short,clients=2,input=16,output=6,prompts=4 \
    --group name=long,clients=1,input=300,output=1,prompts=2 --label tiny \
    --result-json "$tmp/mixed.json" >"$tmp/mixed.out" 2>&1 || fail "mixed: exit $?"
sb --input-len 8 --output-len 2 --concurrency 2 --prompts-per-client 1 --vocab-size 100000 \
    --no-warmup --result-json "$tmp/bad.json" >"$tmp/bad.out" 2>&1
[ $? -eq 1 ] || fail "ids outside the vocabulary: exit code not 1"
grep -q 'outside the vocabulary' "$tmp/bad.out" || fail "no error message: $(cat "$tmp/bad.out")"

"$py" - "$tmp" <<'EOF' || fail "results"
import json, sys
t = sys.argv[1]
d = json.load(open(f"{t}/sweep.json"))
assert d["benchmark"] == "serve" and d["server"]["label"] == "tiny", d
assert d["server"]["settings"] == "test" and d["command"] and d["commit"] and d["device"], d
for run, c in zip(d["runs"], (1, 3)):
    assert run["mode"] == "closed" and run["concurrency"] == c, run
    n = max(2 * c, 0)
    assert run["completed"] == n and run["errors"] == 0, run
    assert run["output_tokens"] == 8 * n and run["input_tokens"] == 24 * n, run
    assert run["ttft_ms"]["n"] == n and run["tpot_ms"]["n"] == n, run
    # one chunk per token on the shipped model's text tokens, a gap between each two
    assert 0.5 <= run["chunks_per_output_token"] <= 1.0, run
    assert run["itl_ms"]["n"] == round(run["chunks_per_output_token"] * 8 * n) - n, run
    for k in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        s = run[k]
        assert 0 < s["p50"] <= s["p90"] <= s["p99"] <= s["max"], (k, s)
    assert run["output_throughput"] > 0 and run["request_throughput"] > 0, run
m = json.load(open(f"{t}/mixed.json"))["runs"][0]
g = m["groups"]
assert m["mode"] == "mixed" and g["short"]["completed"] == 4 and g["long"]["completed"] == 2, m
assert g["short"]["output_tokens"] == 24 and g["long"]["input_tokens"] == 600, g
assert g["long"]["prefill_throughput"] > 0 and g["short"]["itl_ms"]["n"] > 0, g
b = json.load(open(f"{t}/bad.json"))["runs"][0]
assert b["errors"] == 2 and b["completed"] == 0, b
EOF
"$py" "$repo/bench/plot_serve.py" --table-only "$tmp/sweep.json" "$tmp/mixed.json" >"$tmp/table" ||
    fail "plot_serve.py --table-only"
grep -Eq '^\| tiny \| closed \| 3 \| 24 / 8 \|' "$tmp/table" || fail "table: $(cat "$tmp/table")"
grep -Eq '^\| tiny \| mixed: long \| 1 \| 300 / 1 \|' "$tmp/table" || fail "table lacks the groups"
"$py" "$repo/bench/plot_serve.py" --mixed "$tmp/sweep.json" "$tmp/mixed.json" "$tmp/mixed.json" \
    >"$tmp/check" 2>&1 || true
grep -q 'decode-only step' "$tmp/check" || fail "mixed check: $(cat "$tmp/check")"
if [ "$failures" -ne 0 ]; then
    echo "$failures serve_bench checks failed" >&2
    exit 1
fi
echo "serve_bench checks passed"
