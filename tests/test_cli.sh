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

# text prompts go through the folder's tokenizer — SentencePiece (BOS added as
# tokenizer_config.json says), or the byte-level BPE tokenizer.json that the Falcon-H1 and Zamba2
# fixtures ship (Zamba2's post-processor prepends <|bos|>) — and reproduce transformers' greedy
# continuation of the same ids
for m in falcon_h1_bpe zamba2_bpe nemotron_h_spm; do
  rm -f "$tmp"/case_*
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
  [ "$cases" -ge 3 ] || fail "$m: only $cases text prompts compared"
done
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

# Mamba-1 as state-spaces/mamba-*-hf ship it (issue 13): text through the GPT-NeoX byte-level BPE
# tokenizer.json (nothing prepended) gives transformers' greedy ids and text; score's logits of a
# FalconMamba prompt are transformers'
m=mamba_bpe
mkdir -p "$tmp/bpe"
python3 "$tests/text_cases.py" "$fx/$m/reference.json" "$tmp/bpe" 1e-2
cases=0
for f in "$tmp"/bpe/case_*.txt; do
  want=$(cat "${f%.txt}.ids")
  n=$(wc -w <<<"$want")
  [ "$n" -gt 0 ] || continue
  got=$("$bin" generate --model "$fx/$m" --prompt "$(cat "$f")" --max-tokens "$n" --temperature 0 \
        --print-ids --ignore-eos --backend cpu 2>/dev/null)
  [ "$got" = "$want" ] || fail "$m text prompt $(cat "$f"): got '$got', want '$want'"
  cases=$((cases + 1))
done
[ "$cases" -ge 3 ] || fail "$m: only $cases text prompts compared"
python3 - "$fx/$m/reference.json" "$tmp/bpe" <<'EOF2' || fail "$m: cannot list the full-length text cases"
import json, sys
for i, r in enumerate(json.load(open(sys.argv[1]))["prompts"]):
    if min(r["margins"]) >= 1e-2:
        open("%s/full_%d.txt" % (sys.argv[2], i), "w", encoding="utf-8").write(r["text"])
        open("%s/full_%d.want" % (sys.argv[2], i), "w", encoding="utf-8").write(r["greedy_text"])
        open("%s/full_%d.n" % (sys.argv[2], i), "w").write(str(len(r["greedy"])))
EOF2
for f in "$tmp"/bpe/full_*.txt; do
  [ -e "$f" ] || continue
  "$bin" generate --model "$fx/$m" --prompt "$(cat "$f")" --max-tokens "$(cat "${f%.txt}.n")" \
    --temperature 0 --ignore-eos --backend cpu >"$tmp/bpe/got" 2>/dev/null || fail "$m generate"
  printf '%s\n' "$(cat "${f%.txt}.want")" | cmp -s - "$tmp/bpe/got" ||
    fail "$m text prompt $(cat "$f"): got '$(cat "$tmp/bpe/got")', want '$(cat "${f%.txt}.want")'"
done
m=falcon_mamba
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$fx/$m/reference.json'))['prompts'][3]['ids'])))")
"$bin" score --model "$fx/$m" --prompt-ids "$ids" --logits-out "$tmp/fm.f32" --backend cpu >/dev/null 2>&1 \
  || fail "$m score failed"
python3 - "$tmp/fm.f32" "$fx/$m" <<'EOF2' || fail "$m: score's logits differ from transformers'"
import json, math, struct, sys
got, d = open(sys.argv[1], "rb").read(), sys.argv[2]
p = json.load(open(d + "/reference.json"))["prompts"][3]
want = open(d + "/" + p["logits"], "rb").read()
n = len(want) // 4
assert len(got) == len(want), (len(got), len(want))
g, w = struct.unpack("<%df" % n, got), struct.unpack("<%df" % n, want)
err = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, w)) / sum(b * b for b in w))
assert err < 1e-3, err
EOF2

# generate stops at any end-of-sequence id of config.json, generation_config.json or the
# tokenizer: serpent-tiny ends a chat turn with <|im_end|> (4), which only
# generation_config.json names; the ids printed stop before it.
tiny=$tests/../models/serpent-tiny
chat=$(printf '<|im_start|>system\nYou are a dictionary. Answer briefly.<|im_end|>\n<|im_start|>user\nTell me what cynic means.<|im_end|>\n<|im_start|>assistant\n')
"$bin" generate --model "$tiny" --prompt "$chat" --max-tokens 200 --temperature 0 --backend cpu \
  --threads 1 --print-ids >"$tmp/ids" 2>"$tmp/err" || fail "generate on serpent-tiny: $(cat "$tmp/err")"
n_ids=$(wc -w <"$tmp/ids")
[ "$n_ids" -gt 0 ] && [ "$n_ids" -lt 200 ] || fail "generate did not stop at <|im_end|>: $n_ids ids"
grep -Eqw '4|2' "$tmp/ids" && fail "generate printed an end-of-sequence id: $(cat "$tmp/ids")"
"$bin" generate --model "$tiny" --prompt "$chat" --max-tokens 200 --temperature 0 --backend cpu \
  --threads 1 >"$tmp/text" 2>/dev/null
grep -q '<|im' "$tmp/text" && fail "generate printed special-token text: $(cat "$tmp/text")"

# serve finds the default model from an executable outside the source tree (an out-of-tree
# build) and from another working directory
mkdir -p "$tmp/elsewhere"
cp "$bin" "$tmp/elsewhere/serpent"
(cd "$tmp/elsewhere" && exec env -u SERPENT_MODEL ./serpent serve --port 0 --backend cpu \
  --threads 1 >"$tmp/serve.log" 2>&1) &
serve_pid=$!
for _ in $(seq 1 100); do
  grep -q 'listening on' "$tmp/serve.log" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q 'loading .*models/serpent-tiny' "$tmp/serve.log" ||
  fail "serve from an out-of-tree executable did not find the default model: $(cat "$tmp/serve.log")"
kill -TERM "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null
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
