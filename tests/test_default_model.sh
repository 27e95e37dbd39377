#!/usr/bin/env bash
# serpent's held-out perplexity on the default model must match PyTorch's within 1%.
#
#   tests/test_default_model.sh SERPENT_BIN MODEL_DIR [MAX_DOCS]
#
# MODEL_DIR is a model folder made by tools/train (models/<name>/): its heldout_ids.txt holds
# the held-out documents' token ids ("INDEX<TAB>id,id,..." per line) and its training.json the
# perplexity transformers measured on exactly those documents (the saved bf16 checkpoint in
# float32, one forward per document), with each document's summed NLL. serpent scores every
# document with one `serpent score` call (fresh state per document, as in training.json) and
# the token-weighted perplexity exp(sum NLL / sum (tokens - 1)) is compared. MAX_DOCS (or
# SERPENT_PPL_DOCS) scores only N documents spread evenly over the file (it is ordered by
# source), compared with the same documents' reference sums. SERPENT_BACKEND picks the backend
# (default auto: cpu without a GPU).
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BIN=$1 MODEL=$2 MAX=${3:-${SERPENT_PPL_DOCS:-0}}
TOL=0.01
for f in "$MODEL/training.json" "$MODEL/heldout_ids.txt" "$MODEL/config.json"; do
  [ -f "$f" ] || { echo "FAIL: $f is missing"; exit 1; }
done
[ -x "$BIN" ] || { echo "FAIL: $BIN is not an executable"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The documents to score: all, or MAX_DOCS of them at even strides.
total=$(grep -c . "$MODEL/heldout_ids.txt")
if [ "$MAX" -gt 0 ] && [ "$MAX" -lt "$total" ]; then
  awk -v m="$MAX" -v t="$total" 'BEGIN { for (j = 0; j < m; j++) want[int(j * t / m) + 1] = 1 }
    want[NR]' "$MODEL/heldout_ids.txt" >"$tmp/docs.txt"
else
  cp "$MODEL/heldout_ids.txt" "$tmp/docs.txt"
fi

# serpent: one score per document -> "INDEX TOKENS MEAN_NLL"
n=0
t0=$(date +%s)
while IFS=$'\t' read -r idx ids; do
  if ! "$BIN" score --model "$MODEL" --backend "${SERPENT_BACKEND:-auto}" --prompt-ids "$ids" \
      >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: serpent score failed on held-out document $idx:"
    cat "$tmp/err"
    exit 1
  fi
  tokens=$(sed -n 's/^tokens: //p' "$tmp/out")
  nll=$(sed -n 's/^mean_nll: //p' "$tmp/out")
  echo "$idx $tokens $nll" >>"$tmp/serpent.txt"
  n=$((n + 1))
done <"$tmp/docs.txt"
[ "$n" -gt 0 ] || { echo "FAIL: no documents in $MODEL/heldout_ids.txt"; exit 1; }
echo "scored $n held-out documents in $(($(date +%s) - t0)) s"

# Compare with training.json's per-document sums (standard-library Python).
python3 - "$MODEL/training.json" "$tmp/serpent.txt" "$TOL" <<'EOF'
import json, math, sys
ref = json.load(open(sys.argv[1]))["heldout"]
tol = float(sys.argv[3])
per_doc = {d["index"]: d for d in ref["per_doc"]}
s_nll = r_nll = 0.0
n_pred = 0
worst = (0.0, None)
for line in open(sys.argv[2]):
    idx, tokens, mean_nll = line.split()
    idx, tokens, mean_nll = int(idx), int(tokens), float(mean_nll)
    d = per_doc.get(idx)
    if d is None:
        sys.exit(f"FAIL: document {idx} is not in training.json's per-document results")
    if d["tokens"] != tokens:
        sys.exit(f"FAIL: document {idx}: serpent scored {tokens} tokens, training.json {d['tokens']}")
    s_nll += mean_nll * (tokens - 1)
    r_nll += d["nll_sum"]
    n_pred += tokens - 1
    diff = abs(mean_nll - d["nll_sum"] / (tokens - 1))
    worst = max(worst, (diff, idx))
s_ppl, r_ppl = math.exp(s_nll / n_pred), math.exp(r_nll / n_pred)
rel = abs(s_ppl - r_ppl) / r_ppl
print(f"held-out perplexity over {n_pred} predicted tokens: serpent {s_ppl:.4f}, "
      f"transformers {r_ppl:.4f} (relative difference {100 * rel:.3f}%, limit {100 * tol:g}%); "
      f"largest per-document mean-NLL difference {worst[0]:.5f} (document {worst[1]})")
if len(per_doc) == sum(1 for _ in open(sys.argv[2])) and \
        abs(r_ppl - ref["perplexity"]) > 1e-6 * ref["perplexity"]:
    # All documents scored: their sums must give training.json's headline number.
    sys.exit(f"FAIL: training.json's per-document sums give {r_ppl}, its perplexity is "
             f"{ref['perplexity']}")
if rel > tol:
    print("FAIL")
    sys.exit(1)
print("PASS")
EOF
