#!/bin/bash
# The HTTP tests of serpent serve, one ctest entry each: run.sh NAME.
# Needs node, curl and tests/server/node_modules (tests/server/setup.sh installs them);
# fails loudly when they are missing.
source "$(dirname "$0")/lib.sh"

case "${1:?usage: run.sh TEST}" in
openai_client)
  make_text_model "$work/text"
  start_server SERPENT_URL "$SERPENT_BIN" --model "$work/text" --served-model-name test-model \
    --max-num-seqs 8 --threads 1
  node --test "$here/openai_client.test.mjs"
  stop_server "$SERPENT_URL_PID"
  ;;
bad_input)
  make_text_model "$work/text"
  make_text_model "$work/notemplate" notemplate
  start_server SERPENT_URL "$SERPENT_BIN" --model "$work/text" --api-key secret \
    --max-model-len 64 --max-request-mb 1 --threads 1
  start_server SERPENT_URL2 "$SERPENT_BIN" --model "$work/notemplate" --max-num-seqs 1 \
    --max-queue 0 --threads 1
  node --test "$here/bad_input.test.mjs"
  stop_server "$SERPENT_URL_PID"
  stop_server "$SERPENT_URL2_PID"
  ;;
greedy)
  urls="" pids=()
  for ref in "$fixtures"/*/reference.json; do
    f=$(basename "$(dirname "$ref")")
    # 32-token steps: the long prompts are prefilled in chunks (dynamic RoPE's included)
    start_server URL_F "$SERPENT_BIN" --model "$fixtures/$f" --max-num-seqs 3 \
      --max-num-batched-tokens 32 --threads 1
    urls="$urls${urls:+,}$f=$URL_F"
    pids+=("$URL_F_PID")
  done
  make_text_model "$work/text"
  start_server SERPENT_URL "$SERPENT_BIN" --model "$work/text" --max-num-seqs 16 \
    --max-num-batched-tokens 64 --threads 1
  SERPENT_FIXTURE_URLS=$urls SERPENT_FIXTURES=$fixtures SERPENT_TEXT_MODEL=$work/text \
    node --test "$here/greedy.test.mjs"
  for pid in "${pids[@]}"; do stop_server "$pid"; done
  stop_server "$SERPENT_URL_PID"
  ;;
clients)
  start_server SERPENT_URL "$SERPENT_BIN" --model "$here/../../models/serpent-tiny" \
    --max-num-seqs 8 --threads 1
  node --test "$here/clients.test.mjs"
  stop_server "$SERPENT_URL_PID"
  ;;
structured)
  start_server SERPENT_URL "$SERPENT_BIN" --model "$here/../../models/serpent-tiny" \
    --max-num-seqs 8 --threads 1
  node --test "$here/structured.test.mjs"
  stop_server "$SERPENT_URL_PID"
  ;;
redteam)
  start_server SERPENT_URL "$SERPENT_BIN" --model "$here/../../models/serpent-tiny" --api-key secret \
    --max-connections 64 --max-connections-per-ip 32 --request-timeout 2 --max-request-mb 20 \
    --max-num-seqs 4 --threads 1
  node --test --test-reporter=spec "$here/redteam.test.mjs"
  stop_server "$SERPENT_URL_PID"
  ;;
tools)
  # the shipped model three ways: no parsers (auto tool choice is a 400), and with the
  # reasoning parsers (its replies have no think tags: deepseek_r1 reads them all as
  # reasoning, qwen3 as content) and the hermes tool-call parser
  tiny="$here/../../models/serpent-tiny"
  start_server SERPENT_URL "$SERPENT_BIN" --model "$tiny" --max-num-seqs 4 --threads 1
  start_server SERPENT_URL_R1 "$SERPENT_BIN" --model "$tiny" --max-num-seqs 4 --threads 1 \
    --reasoning-parser deepseek_r1 --tool-call-parser hermes
  start_server SERPENT_URL_Q3 "$SERPENT_BIN" --model "$tiny" --max-num-seqs 4 --threads 1 \
    --reasoning-parser qwen3 --tool-call-parser qwen3_coder
  node --test "$here/tools.test.mjs"
  stop_server "$SERPENT_URL_PID"
  stop_server "$SERPENT_URL_R1_PID"
  stop_server "$SERPENT_URL_Q3_PID"
  ;;
curl) source "$here/curl.sh" ;;
prefix)
  make_text_model "$work/text"
  args=(--model "$work/text" --max-num-seqs 8 --max-num-batched-tokens 32 --max-model-len 2048
    --threads 1)
  start_server SERPENT_URL "$SERPENT_BIN" "${args[@]}"
  start_server SERPENT_URL2 "$SERPENT_BIN" "${args[@]}" --no-prefix-cache
  node --test "$here/prefix.test.mjs"
  stop_server "$SERPENT_URL_PID"
  stop_server "$SERPENT_URL2_PID"
  ;;
load)
  make_text_model "$work/text"
  start_server SERPENT_URL "$SERPENT_BIN" --model "$work/text" --max-num-seqs 64 \
    --max-num-batched-tokens 256 --max-model-len 512 --http-threads 2
  node --test --test-reporter=spec "$here/load.test.mjs"
  stop_server "$SERPENT_URL_PID"
  ;;
*) die "unknown test $1" ;;
esac
echo "PASS: $1"
