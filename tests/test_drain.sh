#!/usr/bin/env bash
# Two `serpent serve` replicas (CPU, the default model) behind a real nginx on loopback with the
# load-balancer example's configuration (docker/nginx/serpent.conf). Clients send completions
# through nginx without pause; one replica gets SIGTERM in the middle. Every request must
# succeed, the drained replica must exit 0, and the other must go on serving.
#   test_drain.sh SERPENT_BINARY REPO_DIR
set -u
bin=$1
repo=$2
model=$repo/models/serpent-tiny
command -v nginx >/dev/null || { echo "FAIL: nginx is not installed (tests/setup_drain.sh)"; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl is not installed"; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port); pn=$(free_port)

for port in $p1 $p2; do
  "$bin" serve --model "$model" --host 127.0.0.1 --port "$port" --backend cpu --threads 1 \
    --max-num-seqs 8 --timeout 60 >"$tmp/replica_$port.log" 2>&1 &
  pids+=($!)
done
rep1=${pids[0]}

# the example configuration, with the replicas' loopback addresses
sed -e "s/replica1:8000/127.0.0.1:$p1/" -e "s/replica2:8000/127.0.0.1:$p2/" \
    -e "s/listen 8080;/listen 127.0.0.1:$pn;/" "$repo/docker/nginx/serpent.conf" >"$tmp/serpent.conf"
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log $tmp/nginx/access.log;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $tmp/serpent.conf;
}
EOF
nginx -t -c "$tmp/nginx.conf" -p "$tmp" >"$tmp/nginx_test.log" 2>&1 || { cat "$tmp/nginx_test.log"; echo "FAIL: nginx rejects the example configuration"; exit 1; }
nginx -c "$tmp/nginx.conf" -p "$tmp" &
pids+=($!)

# both replicas ready
for port in $p1 $p2; do
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$port/health" >/dev/null || { cat "$tmp/replica_$port.log"; echo "FAIL: replica on $port not ready"; exit 1; }
done

# clients: each sends completions one after another until told to stop
client() {
  local n=0 bad=0
  while [ ! -f "$tmp/stop" ]; do
    code=$(curl -s -o "$tmp/body_$1" -w '%{http_code}' -H 'Content-Type: application/json' \
      -d '{"model":"serpent-tiny","prompt":"The Lord said unto Moses","max_tokens":24,"temperature":0}' \
      "http://127.0.0.1:$pn/v1/completions")
    n=$((n + 1))
    if [ "$code" != 200 ] || ! grep -q '"text"' "$tmp/body_$1"; then
      bad=$((bad + 1))
      echo "client $1 request $n: HTTP $code $(head -c 300 "$tmp/body_$1")" >>"$tmp/failures"
    fi
  done
  echo "$n $bad" >"$tmp/client_$1"
}
clients=()
for c in 1 2 3 4 5 6; do
  client $c &
  clients+=($!)
done

sleep 8
kill -TERM "$rep1"
wait "$rep1"
rc1=$?
sleep 8
touch "$tmp/stop"
wait "${clients[@]}"
total=0; failed=0
for c in 1 2 3 4 5 6; do
  read -r n bad <"$tmp/client_$c"
  total=$((total + n)); failed=$((failed + bad))
done
echo "requests through nginx: $total, failed: $failed; drained replica exit code: $rc1"
status=0
[ "$failed" -eq 0 ] || { head -20 "$tmp/failures"; status=1; }
[ "$rc1" -eq 0 ] || { tail -20 "$tmp/replica_$p1.log"; echo "FAIL: the drained replica exited with $rc1"; status=1; }
[ "$total" -ge 12 ] || { echo "FAIL: only $total requests completed"; status=1; }
curl -fs "http://127.0.0.1:$p2/health" >/dev/null || { echo "FAIL: the other replica stopped serving"; status=1; }
[ "$status" -eq 0 ] && echo "drain test passed"
exit $status
