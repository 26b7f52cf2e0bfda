#!/usr/bin/env bash
# Small-response HTTP benchmark: Outpost vs nginx, same machine, same run.
#
#   bench/http_small.sh                 # uses build/src/outpost
#   OUTPOST_BIN=build-rel/src/outpost DURATION=30s bench/http_small.sh
#
# What it does:
#   1. starts nginx from a temp nginx.conf on 127.0.0.1:<free port>
#      (worker_processes auto, access_log off) serving a 2-byte "{}" file with
#      the same Docker-Distribution-API-Version header Outpost sends, and a
#      1 GiB file (fallocate) for the large-file rate;
#   2. starts `outpost serve` from a temp config on another free port;
#   3. runs `wrk -t$THREADS -c$CONNS -d$DURATION` against nginx's small file and
#      Outpost's `GET /v2/`, prints requests/s of each and the ratio;
#   4. prints Outpost's peak RSS (VmHWM) after the run;
#   5. downloads the 1 GiB file from nginx with curl and prints the rate.
#      TODO(blob-endpoint): the same download from Outpost once
#      `GET /v2/<name>/blobs/<digest>` exists -- see outpost_big_url below.
#
# Not a test: .ci/run does not run it. Needs nginx, wrk, curl (.ci/install-deps).
# Use an optimized build (the default buildtype is debugoptimized; for numbers
# to publish, `meson setup build-rel --buildtype=release`). On a 2-core box wrk
# and the server share the CPUs, so compare the ratio, not the absolute rates.
set -euo pipefail

cd "$(dirname "$0")/.."
OUTPOST_BIN=${OUTPOST_BIN:-build/src/outpost}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
LOG_LEVEL=${OUTPOST_LOG_LEVEL:-warn}   # info logs one line per request
BIG_SIZE=${BIG_SIZE:-1G}

for tool in nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run .ci/install-deps" >&2; exit 2; }
done
[ -x "$OUTPOST_BIN" ] || { echo "no outpost binary at $OUTPOST_BIN (ninja -C build)" >&2; exit 2; }
OUTPOST_BIN=$(readlink -f "$OUTPOST_BIN")
NGINX_BIN=$(command -v nginx)

TMP=$(mktemp -d /tmp/outpost-bench.XXXXXX)
chmod 755 "$TMP"                       # nginx workers run as an unprivileged user
NGINX_PID="" OUTPOST_PID=""
cleanup() {
  [ -n "$OUTPOST_PID" ] && kill -TERM "$OUTPOST_PID" 2>/dev/null && wait "$OUTPOST_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {  # url, deadline seconds
  local url=$1 deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "not ready: $url" >&2; return 1; fi
    sleep 0.05
  done
}

wrk_rps() {  # url, label -> prints the wrk summary, sets RPS
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1")
  echo "--- $2: $1"
  echo "$out" | grep -E 'Latency|Req/Sec|requests in|Socket errors|Non-2xx|Requests/sec|Transfer/sec|^ +(50|99)%'
  RPS=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
}

# ---- content
mkdir -p "$TMP/www" "$TMP/nginx" "$TMP/outpost"
printf '{}' > "$TMP/www/small.json"
if ! fallocate -l "$BIG_SIZE" "$TMP/www/big.bin" 2>/dev/null; then
  dd if=/dev/zero of="$TMP/www/big.bin" bs=1M count=0 seek=1024 status=none
fi
chmod -R a+rX "$TMP/www"

# ---- nginx
NGINX_PORT=$(free_port)
cat > "$TMP/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  types { application/json json; application/octet-stream bin; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $TMP/www;
    add_header Docker-Distribution-API-Version registry/2.0;
  }
}
EOF
"$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/small.json" 10

# ---- outpost
OUTPOST_PORT=$(free_port)
cat > "$TMP/outpost/outpost.toml" <<EOF
[server]
listen = ["127.0.0.1:$OUTPOST_PORT"]
max_connections = 4096
[storage]
root = "$TMP/outpost/storage"
[registry]
name = "bench"
[log]
level = "$LOG_LEVEL"
EOF
"$OUTPOST_BIN" serve --config "$TMP/outpost/outpost.toml" 2>"$TMP/outpost/stderr.log" &
OUTPOST_PID=$!
wait_http "http://127.0.0.1:$OUTPOST_PORT/v2/" 10

echo "outpost: $("$OUTPOST_BIN" version) ($OUTPOST_BIN, log level $LOG_LEVEL)"
echo "nginx:   $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') (worker_processes auto)"
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) CPUs"
echo "outpost RSS before: $(awk '/^VmRSS/ {print $2}' /proc/$OUTPOST_PID/status) KiB"

# ---- small responses
wrk_rps "http://127.0.0.1:$NGINX_PORT/small.json" "nginx small file"
NGINX_RPS=$RPS
wrk_rps "http://127.0.0.1:$OUTPOST_PORT/v2/" "outpost GET /v2/"
OUTPOST_RPS=$RPS
OUTPOST_HWM=$(awk '/^VmHWM/ {print $2}' /proc/$OUTPOST_PID/status)

# ---- large file
BIG_BYTES=$(stat -c %s "$TMP/www/big.bin")
big_rate() {  # url -> MiB/s
  curl -fsS -o /dev/null -w '%{size_download} %{speed_download}\n' "$1" |
    awk -v want="$BIG_BYTES" '{ if ($1 != want) { print "short:" $1; exit 1 } printf "%.0f", $2 / 1048576 }'
}
NGINX_BIG=$(big_rate "http://127.0.0.1:$NGINX_PORT/big.bin")

# TODO(blob-endpoint): once Outpost serves blobs, push big.bin as a blob
# (POST/PUT /v2/bench/big/blobs/uploads/ with ?digest=sha256:...) and return
# its GET URL here; the comparison below then runs by itself.
outpost_big_url() { echo ""; }
OUTPOST_BIG_URL=$(outpost_big_url)
OUTPOST_BIG=""
if [ -n "$OUTPOST_BIG_URL" ]; then
  OUTPOST_BIG=$(big_rate "$OUTPOST_BIG_URL")
  OUTPOST_HWM=$(awk '/^VmHWM/ {print $2}' /proc/$OUTPOST_PID/status)
fi

echo
echo "=== results ==="
printf 'small  nginx   %12.0f req/s\n' "$NGINX_RPS"
printf 'small  outpost %12.0f req/s\n' "$OUTPOST_RPS"
awk -v o="$OUTPOST_RPS" -v n="$NGINX_RPS" 'BEGIN { printf "small  outpost/nginx ratio %.2f\n", (n > 0 ? o / n : 0) }'
echo "big    nginx   ${NGINX_BIG} MiB/s ($BIG_BYTES bytes, curl -o /dev/null)"
if [ -n "$OUTPOST_BIG" ]; then
  echo "big    outpost ${OUTPOST_BIG} MiB/s"
else
  echo "big    outpost (TODO: blob endpoint not built yet)"
fi
echo "outpost peak RSS (VmHWM): ${OUTPOST_HWM} KiB"
if grep -qE 'level=(error|warn)' "$TMP/outpost/stderr.log"; then
  echo "outpost warnings/errors during the run:"
  grep -E 'level=(error|warn)' "$TMP/outpost/stderr.log" | tail -5
fi
