# shellcheck shell=bash
# Shared helpers for bench/*.sh (sourced, not run). Everything listens on
# 127.0.0.1 only. The including script sets TMP (a temp dir it removes) and
# calls bench_cleanup from its EXIT trap; every process started here is
# registered in BENCH_PIDS and stopped there.

BENCH_PIDS=()

bench_require() {  # tool...
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run .ci/install-deps" >&2; exit 2; }
  done
}

# OUTPOST_BIN defaults to the release build the README describes.
bench_outpost_bin() {
  OUTPOST_BIN=${OUTPOST_BIN:-build-bench/src/outpost}
  [ -x "$OUTPOST_BIN" ] || {
    echo "no outpost binary at $OUTPOST_BIN; build one with:" >&2
    echo "  meson setup build-bench --buildtype=release -Dwerror=false && ninja -C build-bench src/outpost" >&2
    exit 2
  }
  OUTPOST_BIN=$(readlink -f "$OUTPOST_BIN")
}

bench_track() { BENCH_PIDS+=("$1"); }

bench_stop() {  # pid [signal]: stop one process we started and reap it
  local pid=$1 sig=${2:-TERM}
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do bench_stop "$pid"; done
  BENCH_PIDS=()
  [ -n "${TMP:-}" ] && [ -d "$TMP" ] && rm -rf "$TMP"
}

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

now_ns() { date +%s%N; }

# start_nginx DIR ROOT -> sets NGINX_PORT, NGINX_PID. Serves ROOT with
# sendfile, access_log off, worker_processes $NGINX_WORKERS (default auto: one
# per CPU; Outpost serves from one event-loop thread), and the same
# Docker-Distribution-API-Version header Outpost sends.
start_nginx() {
  local dir=$1 root=$2
  NGINX_BIN=$(command -v nginx)
  NGINX_PORT=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-auto};
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  types { application/json json; application/octet-stream bin; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $root;
    add_header Docker-Distribution-API-Version registry/2.0;
  }
}
EOF
  "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
  NGINX_PID=$!
  bench_track "$NGINX_PID"
  local deadline=$(( $(date +%s) + 10 ))
  until curl -sS -o /dev/null "http://127.0.0.1:$NGINX_PORT/" 2>/dev/null; do   # any status will do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "nginx did not start" >&2; cat "$dir/error.log" >&2; return 1; }
    sleep 0.05
  done
}

# start_outpost DIR LOG_LEVEL [PARENT_URL] -> sets OUTPOST_PORT, OUTPOST_PID.
# stderr (the logfmt log, one access line per request at "info") goes to
# DIR/stderr.log.
start_outpost() {
  local dir=$1 level=$2 parent=${3:-}
  OUTPOST_PORT=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/outpost.toml" <<EOF
[server]
listen = ["127.0.0.1:$OUTPOST_PORT"]
max_connections = 4096
[storage]
root = "$dir/storage"
[registry]
name = "bench"
[parent]
url = "$parent"
[log]
level = "$level"
EOF
  "$OUTPOST_BIN" serve --config "$dir/outpost.toml" 2>"$dir/stderr.log" &
  OUTPOST_PID=$!
  bench_track "$OUTPOST_PID"
  wait_http "http://127.0.0.1:$OUTPOST_PORT/v2/" 10 || { tail -n 20 "$dir/stderr.log" >&2; return 1; }
}

# start_distribution DIR [PROXY_REMOTE_URL] -> sets DIST_PORT, DIST_PID.
# Debian's CNCF distribution (docker-registry), filesystem storage in DIR,
# log level warn, access log off.
start_distribution() {
  local dir=$1 remote=${2:-}
  DIST_PORT=$(free_port)
  mkdir -p "$dir/storage"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "  formatter: text"
    echo "  accesslog:"
    echo "    disabled: true"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/storage"
    echo "  maintenance:"
    echo "    uploadpurging:"
    echo "      enabled: false"
    echo "http:"
    echo "  addr: 127.0.0.1:$DIST_PORT"
    echo "  secret: outpost-bench-secret"
    if [ -n "$remote" ]; then
      echo "proxy:"
      echo "  remoteurl: $remote"
    fi
  } > "$dir/config.yml"
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  DIST_PID=$!
  bench_track "$DIST_PID"
  wait_http "http://127.0.0.1:$DIST_PORT/v2/" 15 || { tail -n 20 "$dir/stderr.log" >&2; return 1; }
}

alive_or_warn() {  # pid label: say so loudly if a server we started has died
  kill -0 "$1" 2>/dev/null && return 0
  wait "$1" 2>/dev/null; local rc=$?
  echo "(!) $2 (pid $1) is no longer running (exit status $rc): the numbers above are suspect"
}

cpu_secs() {  # pid -> user+system CPU seconds the process (all threads) used so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

vm_kib() {  # pid field(VmHWM|VmRSS)
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# Background sampler of a process's VmHWM/VmRSS every 0.2 s into FILE (the
# kernel's VmHWM is already the peak; the samples show when it grew).
start_rss_sampler() {  # pid file
  local pid=$1 file=$2
  (
    while kill -0 "$pid" 2>/dev/null; do
      awk -v t="$(date +%s.%N)" '/^VmHWM|^VmRSS/ {v[$1]=$2} END {print t, v["VmRSS:"], v["VmHWM:"]}' \
        "/proc/$pid/status" 2>/dev/null || true
      sleep 0.2
    done
  ) > "$file" &
  bench_track $!
}

median() {  # numbers... -> median (mean of the middle two for an even count)
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
    if (NR == 0) { print 0; exit }
    if (NR % 2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}

ratio() {  # a b -> a/b with 2 decimals
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}
