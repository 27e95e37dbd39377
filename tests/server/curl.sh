# curl against serpent serve (sourced by run.sh after lib.sh): the plain routes, SSE framing,
# the API key from SERPENT_API_KEY, and graceful shutdown on SIGTERM.
json() { node -e "const j=JSON.parse(require('fs').readFileSync(0));console.log(eval(process.argv[1]))" "$1"; }

make_text_model "$work/text"
SERPENT_API_KEY=k123 start_server U "$SERPENT_BIN" --model "$work/text" --served-model-name tiny --threads 1 \
  --timeout 600
H=(-H "Authorization: Bearer k123")

[ "$(curl -s -o /dev/null -w '%{http_code}' "$U/health")" = 200 ] || die "/health is not 200"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/models")" = 401 ] || die "SERPENT_API_KEY is not enforced"
[ "$(curl -s "${H[@]}" "$U/v1/models" | json 'j.data[0].id')" = tiny ] || die "/v1/models"

out=$(curl -s "${H[@]}" "$U/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":"Permission is","max_tokens":5,"temperature":0,"ignore_eos":true}')
[ "$(echo "$out" | json 'j.choices[0].finish_reason')" = length ] || die "completion: $out"
[ "$(echo "$out" | json 'j.usage.completion_tokens')" = 5 ] || die "usage: $out"

# SSE: data: lines separated by blank lines, [DONE] last
sse=$(curl -sN "${H[@]}" "$U/v1/completions" \
  -d '{"prompt":"Permission is","max_tokens":5,"temperature":0,"ignore_eos":true,"stream":true}')
[ "$(echo "$sse" | grep -c '^data: {')" -ge 2 ] || die "too few SSE chunks: $sse"
[ "$(echo "$sse" | grep -v '^$' | tail -1)" = "data: [DONE]" ] || die "no [DONE] at the end: $sse"
[ "$(echo "$sse" | grep -v '^$' | grep -vc '^data: ')" = 0 ] || die "a line that is not data: $sse"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "${H[@]}" "$U/v1/completions" -d '{"prompt":"a","max_tokens":1,"stream":true}')
[ "$ctype" = text/event-stream ] || die "stream content type $ctype"

# tokenize / detokenize round trip
ids=$(curl -s "${H[@]}" "$U/tokenize" -d '{"prompt":"Café serpent","add_special_tokens":false}' | json 'JSON.stringify(j.tokens)')
[ "$(curl -s "${H[@]}" "$U/detokenize" -d "{\"tokens\":$ids}" | json 'j.prompt')" = "Café serpent" ] ||
  die "tokenize/detokenize round trip ($ids)"

# metrics: vLLM-like names
m=$(curl -s "$U/metrics")
for name in num_requests_running num_requests_waiting prompt_tokens_total generation_tokens_total \
  time_to_first_token_seconds_bucket inter_token_latency_seconds_count e2e_request_latency_seconds_sum \
  state_slots_total state_slots_used kv_blocks_total kv_blocks_used kv_cache_usage_perc; do
  grep -q "^serpent:$name" <<<"$m" || die "/metrics lacks serpent:$name"
done
gen=$(echo "$m" | grep '^serpent:generation_tokens_total' | awk '{print $2}')
[ "$gen" -eq 11 ] || die "generation_tokens_total is $gen"

# a client that gives up on a plain (non-stream) request frees its slot
curl -s -m 0.5 "${H[@]}" "$U/v1/completions" -d '{"prompt":"a","max_tokens":3000,"ignore_eos":true}' || true
freed=""
for _ in $(seq 1 200); do
  m=$(curl -s "$U/metrics")
  if grep -q '^serpent:state_slots_used{[^}]*} 0$' <<<"$m" &&
    grep -q '^serpent:request_finished_total{finished_reason="abort"[^}]*} 1$' <<<"$m"; then
    freed=1
    break
  fi
  sleep 0.05
done
[ -n "$freed" ] || die "a disconnected plain request kept its slot: $m"

# graceful shutdown: an in-flight request finishes after SIGTERM; meanwhile /health is 503
curl -s "${H[@]}" "$U/v1/completions" -d '{"prompt":"a","max_tokens":3000,"ignore_eos":true}' >"$work/inflight.json" &
cpid=$!
for _ in $(seq 1 100); do
  [ "$(curl -s "$U/metrics" | grep '^serpent:num_requests_running' | awk '{print $2}')" = 1 ] && break
  sleep 0.05
done
kill -TERM "$U_PID"
# the server notices the signal within its 20 ms poll: /health turns 503 then, not at once
for _ in $(seq 1 40); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$U/health")
  [ "$code" = 503 ] && break
  sleep 0.05
done
[ "$code" = 503 ] || die "/health during draining is $code, not 503"
code=$(curl -s -o "$work/late.json" -w '%{http_code}' "${H[@]}" "$U/v1/completions" -d '{"prompt":"a","max_tokens":1}')
[ "$code" = 503 ] || die "a request while draining got $code"
wait "$cpid"
[ "$(json 'j.choices[0].finish_reason' <"$work/inflight.json")" = length ] || die "in-flight request: $(cat "$work/inflight.json")"
rc=0
wait "$U_PID" || rc=$?
[ "$rc" = 0 ] || die "exit code $rc after SIGTERM"

# --timeout bounds the drain: a request too long to finish is cancelled (503), exit code 0
start_server V "$SERPENT_BIN" --model "$work/text" --threads 1 --timeout 1 --max-model-len 200000
curl -sN "$V/v1/completions" -d '{"prompt":"a","max_tokens":190000,"ignore_eos":true,"stream":true}' >"$work/cut.txt" &
cpid=$!
for _ in $(seq 1 100); do [ -s "$work/cut.txt" ] && break; sleep 0.05; done
kill -TERM "$V_PID"
rc=0
wait "$V_PID" || rc=$?
[ "$rc" = 0 ] || die "exit code $rc after SIGTERM with --timeout 1"
wait "$cpid" || true
grep -q '^data: {"error":' "$work/cut.txt" || die "the cut stream has no error event"
grep -q '"finish_reason":"length"' "$work/cut.txt" && die "the request ran to its end despite --timeout"
[ "$(grep -v '^$' "$work/cut.txt" | tail -1)" = "data: [DONE]" ] || die "the cut stream does not end with [DONE]"
