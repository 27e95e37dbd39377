# Helpers for the server tests (sourced by run.sh): model folders, starting and stopping
# servers. Everything lives in one temporary folder removed at exit.
set -euo pipefail

die() {
  echo "FAIL: $*" >&2
  exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SERPENT_BIN:?SERPENT_BIN must name the serpent executable}"
fixtures="$here/../fixtures"
for tool in node curl; do
  command -v "$tool" >/dev/null || die "$tool is missing: run tests/server/setup.sh"
done
[ -f "$here/node_modules/openai/package.json" ] && [ -f "$here/node_modules/@langchain/openai/package.json" ] &&
  [ -f "$here/node_modules/@ai-sdk/openai/package.json" ] ||
  die "tests/server/node_modules is missing: run tests/server/setup.sh (npm ci)"

work=$(mktemp -d)
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# make_text_model DIR [notemplate]: the nemotron_h_pattern fixture's weights with the test
# SentencePiece tokenizer (and chat template unless notemplate).
make_text_model() {
  local dir=$1
  mkdir -p "$dir"
  ln -s "$fixtures/nemotron_h_pattern/config.json" "$dir/config.json"
  ln -s "$fixtures/nemotron_h_pattern/model.safetensors" "$dir/model.safetensors"
  cp "$here/model/tokenizer.model" "$dir/"
  if [ "${2:-}" = notemplate ]; then
    node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));delete c.chat_template;
             require("fs").writeFileSync(process.argv[2], JSON.stringify(c))' \
      "$here/model/tokenizer_config.json" "$dir/tokenizer_config.json"
  else
    cp "$here/model/tokenizer_config.json" "$dir/"
  fi
}

# start_server VAR BIN ARGS...: starts a server on a free port, waits for /health 200 and sets
# VAR to its base URL and VAR_PID to its pid; the log is $work/VAR.N.log, N counting the
# servers. (One name per VAR raced: the background shell truncates the file only when it gets to
# run, so the wait could read the previous server's port from it and hand out that URL.)
start_server() {
  local var=$1 bin=$2
  shift 2
  local log="$work/$var.${#servers[@]}.log"
  "$bin" serve --port 0 --backend cpu "$@" >"$log" 2>&1 &
  local pid=$!
  servers+=("$pid")
  local port=""
  for _ in $(seq 1 600); do
    port=$(grep -o 'listening on http://[^ ]*' "$log" 2>/dev/null | sed 's/.*://') || true
    if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "server $var exited during start-up"; }
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$log" >&2; die "server $var never became ready"; }
  printf -v "$var" 'http://127.0.0.1:%s' "$port"
  printf -v "${var}_PID" '%s' "$pid"
  export "${var?}" "${var}_PID"
}

# stop_server PID: SIGTERM, and the exit code must be 0.
stop_server() {
  local pid=$1 rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || die "server $pid exited with $rc after SIGTERM"
}
