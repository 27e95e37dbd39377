#!/usr/bin/env bash
# The serpent executable's command line: help, usage errors (exit 2), runtime errors (exit 1,
# with a message naming the file), and generate/score against the transformers fixtures.
#   test_cli.sh SERPENT_BINARY TESTS_DIR
set -u
bin=$1
tests=$2
fx=$tests/fixtures
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect CODE PATTERN -- command...: exit code CODE and PATTERN (grep -E) in stdout+stderr
expect() {
  local code=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>&1
  local got=$?
  [ "$got" -eq "$code" ] || fail "exit $got (want $code): $*"
  grep -Eq -- "$pattern" "$tmp/out" || fail "no /$pattern/ in output of: $* ---- $(head -c 600 "$tmp/out")"
}

# help and usage errors
expect 0 'usage: serpent generate' -- "$bin" generate --help
expect 0 'usage: serpent score' -- "$bin" score --help
expect 0 'commands:' -- "$bin" --help
expect 2 'unknown command' -- "$bin" frobnicate
expect 2 'usage:' -- "$bin"
expect 2 "unknown option '--bogus'" -- "$bin" generate --model "$fx/mamba2_tied" --prompt-ids 1 --bogus
expect 2 'bad value' -- "$bin" generate --model "$fx/mamba2_tied" --prompt-ids 1 --max-tokens ten
expect 2 'bad value' -- "$bin" generate --model "$fx/mamba2_tied" --prompt-ids 1 --temperature 1x
expect 2 'needs a value' -- "$bin" generate --model "$fx/mamba2_tied" --prompt-ids
expect 2 '--model is required' -- "$bin" generate --prompt-ids 1
expect 2 'top-p' -- "$bin" generate --model "$fx/mamba2_tied" --prompt-ids 1 --top-p 0
expect 2 'exactly one of' -- "$bin" generate --model "$fx/mamba2_tied"
expect 2 'comma-separated' -- "$bin" score --model "$fx/mamba2_tied" --prompt-ids 1,,2
expect 2 'comma-separated' -- "$bin" score --model "$fx/mamba2_tied" --prompt-ids 1,-2
expect 2 'unexpected argument' -- "$bin" score --model "$fx/mamba2_tied" stray

# runtime errors name what failed
expect 1 '/nonexistent/config.json' -- "$bin" score --model /nonexistent --prompt-ids 1
expect 1 'outside the vocabulary' -- "$bin" score --model "$fx/mamba2_tied" --prompt-ids 1,280 --backend cpu
expect 1 'no tokenizer' -- "$bin" generate --model "$fx/mamba2_tied" --prompt hello --backend cpu
mkdir -p "$tmp/trunc"
cp "$fx/mamba2_untied/config.json" "$tmp/trunc/"
head -c 50000 "$fx/mamba2_untied/model.safetensors" >"$tmp/trunc/model.safetensors"
expect 1 'model.safetensors: tensor .* \(truncated file' -- "$bin" score --model "$tmp/trunc" --prompt-ids 1 --backend cpu
mkdir -p "$tmp/badjson"
printf '{"model_type": "mamba2", "hidden_size": 64,\n "num_heads": ]}' >"$tmp/badjson/config.json"
expect 1 'config.json: not valid JSON \(near line 2' -- "$bin" score --model "$tmp/badjson" --prompt-ids 1

# greedy generation reproduces transformers' continuation (the first tokens, all far from ties)
for m in nemotron_h_pattern mamba2_tied; do
  read -r ids want < <(python3 - "$fx/$m/reference.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["prompts"][2]
n = 0
while n < len(r["greedy"]) and r["margins"][n] >= 1e-2:
    n += 1
print(",".join(map(str, r["ids"])), " ".join(map(str, r["greedy"][:n])))
EOF
)
  n=$(wc -w <<<"$want")
  got=$("$bin" generate --model "$fx/$m" --prompt-ids "$ids" --max-tokens "$n" --temperature 0 \
        --print-ids --ignore-eos --backend cpu 2>"$tmp/err")
  [ "$got" = "$want" ] || fail "$m greedy: got '$got', want '$want'"
  grep -q 'generation: .* tokens/s' "$tmp/err" || fail "$m: no generation speed on stderr"
done

# text prompts go through the folder's SentencePiece tokenizer (BOS added as tokenizer_config.json
# says) and reproduce transformers' greedy continuation of the same ids
m=nemotron_h_spm
python3 "$tests/text_cases.py" "$fx/$m/reference.json" "$tmp" 1e-2
cases=0
for f in "$tmp"/case_*.txt; do
  want=$(cat "${f%.txt}.ids")
  n=$(wc -w <<<"$want")
  [ "$n" -gt 0 ] || continue
  got=$("$bin" generate --model "$fx/$m" --prompt "$(cat "$f")" --max-tokens "$n" --temperature 0 \
        --print-ids --ignore-eos --backend cpu 2>/dev/null)
  [ "$got" = "$want" ] || fail "$m text prompt $(cat "$f"): got '$got', want '$want'"
  cases=$((cases + 1))
done
[ "$cases" -ge 3 ] || fail "only $cases text prompts compared"
"$bin" generate --model "$fx/$m" --prompt "Hello" --max-tokens 30 --temperature 0 --backend cpu \
  >"$tmp/text" 2>/dev/null || fail "text generation failed"
python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$tmp/text" \
  || fail "generated text is not valid UTF-8"

# sampling is reproducible with a seed
a=$("$bin" generate --model "$fx/mamba2_untied" --prompt-ids 3,4 --max-tokens 20 --seed 7 --print-ids --backend cpu 2>/dev/null)
b=$("$bin" generate --model "$fx/mamba2_untied" --prompt-ids 3,4 --max-tokens 20 --seed 7 --print-ids --backend cpu 2>/dev/null)
c=$("$bin" generate --model "$fx/mamba2_untied" --prompt-ids 3,4 --max-tokens 20 --seed 8 --print-ids --backend cpu 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "same seed, different samples: '$a' vs '$b'"
[ "$a" != "$c" ] || fail "different seeds, same 20 samples"

# score: NLL and perplexity agree with each other and with the logits it writes
m=nemotron_h_list
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$fx/$m/reference.json'))['prompts'][3]['ids'])))")
"$bin" score --model "$fx/$m" --prompt-ids "$ids" --logits-out "$tmp/logits.f32" --backend cpu >"$tmp/score" 2>/dev/null \
  || fail "score failed"
python3 - "$tmp/score" "$tmp/logits.f32" "$fx/$m" "$ids" <<'EOF' || fail "score output does not match the reference"
import json, math, struct, sys
out, logits_path, fxdir, ids = sys.argv[1:]
ids = [int(x) for x in ids.split(",")]
vals = dict(l.split(": ") for l in open(out).read().strip().splitlines())
V = json.load(open(fxdir + "/config.json"))["vocab_size"]
raw = open(logits_path, "rb").read()
assert len(raw) == 4 * V * len(ids), ("logits file size", len(raw))
rows = [struct.unpack_from("<%df" % V, raw, 4 * V * i) for i in range(len(ids))]
ref = json.load(open(fxdir + "/reference.json"))["prompts"][3]
ref_raw = open(fxdir + "/" + ref["logits"], "rb").read()
nll = 0.0
for i in range(len(ids) - 1):
    r = struct.unpack_from("<%df" % V, ref_raw, 4 * V * i)
    m = max(r)
    nll -= r[ids[i + 1]] - m - math.log(sum(math.exp(x - m) for x in r))
    assert max(abs(a - b) for a, b in zip(r, rows[i])) < 1e-3 * (1 + max(abs(x) for x in r))
nll /= len(ids) - 1
assert abs(float(vals["mean_nll"]) - nll) < 1e-4 * max(1, nll), (vals, nll)
assert abs(float(vals["perplexity"]) - math.exp(nll)) < 1e-3 * math.exp(nll), vals
assert int(vals["tokens"]) == len(ids)
EOF

# bench: llama-bench-style rows and JSON, on a checkpoint and on random weights of its shape
expect 0 'usage: serpent bench' -- "$bin" bench --help
expect 2 '--batch must be' -- "$bin" bench --model "$fx/nemotron_h_pattern" --batch 0
expect 2 '--prompt-tokens must be' -- "$bin" bench --model "$fx/nemotron_h_pattern" --prompt-tokens 5,x
expect 1 '/nonexistent/config.json' -- "$bin" bench --model /nonexistent --backend cpu
expect 0 '\| tg4 b2 @ d8 \| [0-9.]+ ± [0-9.]+ \|' -- "$bin" bench --model "$fx/nemotron_h_pattern" \
  --backend cpu --threads 1 --prompt-tokens 16 --gen-tokens 4 --batch 1,2 --depth 8 --reps 2 \
  --json "$tmp/bench.json"
grep -Eq '\| pp16 @ d8 \|' "$tmp/out" || fail "bench: no pp16 row: $(cat "$tmp/out")"
python3 - "$tmp/bench.json" <<'EOF' || fail "bench JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["benchmark"] == "serpent-bench" and d["backend"] == "cpu" and d["threads"] == 1, d
assert [r["test"] for r in d["results"]] == ["pp16 @ d8", "tg4 b1 @ d8", "tg4 b2 @ d8"], d
assert all(r["tokens_per_s"] > 0 for r in d["results"]), d
EOF
expect 0 '\(random\) .*\| tg2 b1 \|' -- "$bin" bench --model "$fx/nemotron_h_pattern" --random-weights \
  --backend cpu --threads 1 --prompt-tokens 0 --gen-tokens 2 --reps 1 --no-warmup
# serve's scheduler flags are checked before anything loads
expect 2 'itl-slowdown must be' -- "$bin" serve --model "$fx/nemotron_h_pattern" --itl-slowdown 0.5
expect 2 'min-prefill-tokens must be' -- "$bin" serve --model "$fx/nemotron_h_pattern" --min-prefill-tokens 0

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI checks failed" >&2
  exit 1
fi
echo "all CLI checks passed"
