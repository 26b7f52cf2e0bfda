#!/usr/bin/env bash
# HTTP benchmark: Outpost vs nginx, same machine, same run.
#
#   bench/http_small.sh                 # uses build-bench/src/outpost
#   OUTPOST_BIN=build-rel/src/outpost DURATION=30s RUNS=5 bench/http_small.sh
#
# What it does:
#   1. starts nginx from a temp nginx.conf on 127.0.0.1:<free port>
#      (worker_processes $NGINX_WORKERS or auto, access_log off, sendfile) serving a 2-byte "{}"
#      file with the same Docker-Distribution-API-Version header Outpost
#      sends, and a $BIG_SIZE file of random bytes;
#   2. starts two `outpost serve` instances on other free ports, one per log
#      level in $LOG_LEVELS (default "info warn"): at "info" (the default)
#      Outpost writes one access-log line per request to stderr, redirected
#      to a file here; at "warn" it writes none;
#   3. small responses: $SMALL_ROUNDS rounds of
#      `wrk -t$THREADS -c$CONNS -d$DURATION` against nginx's small file, each
#      Outpost's `GET /v2/` and each Outpost's GET of the same 2 bytes pushed
#      as a blob (/v2/bench/small/blobs/<digest>: a store lookup on the thread
#      pool, open, sendfile); prints requests/s of each and the ratios;
#   4. large file: pushes the random file into the first Outpost (the "info"
#      one) as one blob (monolithic POST /v2/bench/blob/blobs/uploads/?digest=,
#      body streamed by curl -T; --request-target keeps
#      curl from appending the file name to the path ending in /), checks one download against the digest,
#      then downloads it $RUNS times each from nginx and from Outpost's
#      GET /v2/bench/blob/blobs/<digest> (alternating, curl -o /dev/null) and
#      prints every rate, the medians and the ratio (target >= 0.95);
#      For reference it also times the same push into Debian's docker-registry
#      (POST + PUT ?digest=; PUSH_COMPARE=0 skips it);
#   5. prints each Outpost's peak RSS (VmHWM) -- for the first instance over
#      the whole run: small requests, push and downloads (target < 32 MiB).
#
# Not a test: .ci/run does not run it. Needs nginx, wrk, curl, python3
# (.ci/install-deps). On a 2-core box wrk/curl and the servers share the
# CPUs, and other load may be present: compare the ratios measured in the
# same run, not the absolute rates. See bench/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
SMALL_ROUNDS=${SMALL_ROUNDS:-2}
LOG_LEVELS=${LOG_LEVELS:-info warn}
BIG_SIZE=${BIG_SIZE:-1G}
RUNS=${RUNS:-5}
PUSH_COMPARE=${PUSH_COMPARE:-1}   # also time the same push into docker-registry

bench_require nginx wrk curl python3 sha256sum
bench_outpost_bin

TMP=$(mktemp -d /tmp/outpost-bench.XXXXXX)
chmod 755 "$TMP"                       # nginx workers run as an unprivileged user
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

wrk_rps() {  # url, label -> prints the wrk summary, sets RPS
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1")
  echo "--- $2: $1"
  echo "$out" | grep -E 'Latency|Req/Sec|requests in|Socket errors|Non-2xx|Requests/sec|Transfer/sec|^ +(50|99)%' || true
  RPS=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then echo "    (!) errors above: this rate is suspect"; fi
}

# ---- content
mkdir -p "$TMP/www"
printf '{}' > "$TMP/www/small.json"
echo "writing $BIG_SIZE of random bytes ..."
head -c "$BIG_SIZE" /dev/urandom > "$TMP/www/big.bin"
BIG_BYTES=$(stat -c %s "$TMP/www/big.bin")
BIG_DIGEST="sha256:$(sha256sum "$TMP/www/big.bin" | cut -d' ' -f1)"
chmod -R a+rX "$TMP/www"

# ---- servers
start_nginx "$TMP/nginx" "$TMP/www"
declare -A OP_PORT OP_PID OP_DIR
LEVELS=()
for level in $LOG_LEVELS; do
  start_outpost "$TMP/outpost-$level" "$level"
  OP_PORT[$level]=$OUTPOST_PORT OP_PID[$level]=$OUTPOST_PID OP_DIR[$level]=$TMP/outpost-$level
  LEVELS+=("$level")
done
MAIN=${LEVELS[0]}   # the instance that also takes the big push and downloads
start_rss_sampler "${OP_PID[$MAIN]}" "$TMP/rss-$MAIN.txt"

echo "outpost: $("$OUTPOST_BIN" version) ($OUTPOST_BIN)"
for level in "${LEVELS[@]}"; do
  echo "  instance log level $level: 127.0.0.1:${OP_PORT[$level]}, RSS at start $(vm_kib "${OP_PID[$level]}" VmRSS) KiB"
done
echo "nginx:   $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') (worker_processes ${NGINX_WORKERS:-auto})"
echo "wrk -t$THREADS -c$CONNS -d$DURATION x $SMALL_ROUNDS rounds, $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# The same 2 bytes as a blob in each Outpost, so a blob GET (store lookup on
# the thread pool, open, sendfile) is compared with nginx's small file too.
SMALL_DIGEST="sha256:$(sha256sum "$TMP/www/small.json" | cut -d' ' -f1)"
for level in "${LEVELS[@]}"; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @"$TMP/www/small.json" \
    "http://127.0.0.1:${OP_PORT[$level]}/v2/bench/small/blobs/uploads/?digest=$SMALL_DIGEST")
  [ "$code" = 201 ] || { echo "small blob push into outpost (log=$level): HTTP $code" >&2; exit 1; }
done

# ---- small responses
NGINX_RPS_ALL=()
declare -A OP_RPS_ALL OP_BLOB_RPS_ALL
for round in $(seq 1 "$SMALL_ROUNDS"); do
  echo; echo "=== small, round $round ==="
  wrk_rps "http://127.0.0.1:$NGINX_PORT/small.json" "nginx small file"
  NGINX_RPS_ALL+=("$RPS")
  for level in "${LEVELS[@]}"; do
    wrk_rps "http://127.0.0.1:${OP_PORT[$level]}/v2/" "outpost GET /v2/ (log level $level)"
    OP_RPS_ALL[$level]="${OP_RPS_ALL[$level]:-} $RPS"
    wrk_rps "http://127.0.0.1:${OP_PORT[$level]}/v2/bench/small/blobs/$SMALL_DIGEST" "outpost 2-byte blob GET (log level $level)"
    OP_BLOB_RPS_ALL[$level]="${OP_BLOB_RPS_ALL[$level]:-} $RPS"
  done
done
HWM_AFTER_SMALL=$(vm_kib "${OP_PID[$MAIN]}" VmHWM)

# ---- large file: push into Outpost
echo; echo "=== big: $BIG_BYTES bytes, $BIG_DIGEST ==="
OP_BASE="http://127.0.0.1:${OP_PORT[$MAIN]}"
cpu0=$(cpu_secs "${OP_PID[$MAIN]}")
push_out=$(curl -sS -X POST -T "$TMP/www/big.bin" -H 'Content-Type: application/octet-stream' \
  -o "$TMP/push.body" -D "$TMP/push.head" -w '%{http_code} %{time_total} %{speed_upload}' \
  --request-target "/v2/bench/blob/blobs/uploads/?digest=$BIG_DIGEST" "$OP_BASE/")
read -r push_code push_secs push_speed <<<"$push_out"
if [ "$push_code" != 201 ]; then
  echo "push failed: HTTP $push_code" >&2; cat "$TMP/push.head" "$TMP/push.body" >&2; exit 1
fi
PUSH_MIBS=$(awk -v s="$push_speed" 'BEGIN { printf "%.0f", s / 1048576 }')
PUSH_CPU=$(awk -v a="$cpu0" -v b="$(cpu_secs "${OP_PID[$MAIN]}")" 'BEGIN { printf "%.2f", b - a }')
echo "pushed in ${push_secs}s (${PUSH_MIBS} MiB/s incl. hashing and fsync), outpost used ${PUSH_CPU} CPU s"
HWM_AFTER_PUSH=$(vm_kib "${OP_PID[$MAIN]}" VmHWM)

# Reference: the same push into Debian's docker-registry (distribution 2.8,
# filesystem storage in the same temp dir) as POST, then PUT ?digest= with
# the whole body (it takes no body on POST).
DIST_PUSH_SECS="" DIST_PUSH_CPU=""
if [ "$PUSH_COMPARE" = 1 ] && [ -x /usr/bin/docker-registry ]; then
  start_distribution "$TMP/distribution"
  loc=$(curl -sS -X POST -o /dev/null -D - "http://127.0.0.1:$DIST_PORT/v2/bench/blob/blobs/uploads/" |
        awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
  case "$loc" in /*) loc="http://127.0.0.1:$DIST_PORT$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  cpu0=$(cpu_secs "$DIST_PID")
  dist_out=$(curl -sS -T "$TMP/www/big.bin" -H 'Content-Type: application/octet-stream' -o /dev/null \
    -w '%{http_code} %{time_total} %{speed_upload}' "$loc${sep}digest=$BIG_DIGEST")
  read -r dist_code DIST_PUSH_SECS dist_speed <<<"$dist_out"
  DIST_PUSH_CPU=$(awk -v a="$cpu0" -v b="$(cpu_secs "$DIST_PID")" 'BEGIN { printf "%.2f", b - a }')
  if [ "$dist_code" != 201 ]; then echo "distribution push: HTTP $dist_code (ignored)"; DIST_PUSH_SECS=""; fi
  [ -n "$DIST_PUSH_SECS" ] && echo "same push into docker-registry: ${DIST_PUSH_SECS}s ($(awk -v s="$dist_speed" 'BEGIN { printf "%.0f", s / 1048576 }') MiB/s), it used ${DIST_PUSH_CPU} CPU s"
  bench_stop "$DIST_PID"; rm -rf "$TMP/distribution"
fi
OUTPOST_BIG_URL="$OP_BASE/v2/bench/blob/blobs/$BIG_DIGEST"
NGINX_BIG_URL="http://127.0.0.1:$NGINX_PORT/big.bin"

got=$(curl -fsS "$OUTPOST_BIG_URL" | sha256sum | cut -d' ' -f1)
[ "sha256:$got" = "$BIG_DIGEST" ] || { echo "outpost served the wrong bytes: sha256:$got" >&2; exit 1; }
echo "one download from outpost checked against the digest: ok (untimed)"
curl -fsS -o /dev/null "$NGINX_BIG_URL"   # both files now hot in the page cache

big_rate() {  # url -> MiB/s
  curl -fsS -o /dev/null -w '%{size_download} %{speed_download}\n' "$1" |
    awk -v want="$BIG_BYTES" '{ if ($1 != want) { print "short:" $1; exit 1 } printf "%.0f", $2 / 1048576 }'
}
NGINX_BIG_ALL=() OUTPOST_BIG_ALL=() PAIR_RATIOS=()
for i in $(seq 1 "$RUNS"); do
  if (( i % 2 )); then
    n=$(big_rate "$NGINX_BIG_URL"); o=$(big_rate "$OUTPOST_BIG_URL")
  else
    o=$(big_rate "$OUTPOST_BIG_URL"); n=$(big_rate "$NGINX_BIG_URL")
  fi
  pr=$(ratio "$o" "$n")
  echo "run $i: nginx $n MiB/s, outpost $o MiB/s, outpost/nginx $pr"
  NGINX_BIG_ALL+=("$n") OUTPOST_BIG_ALL+=("$o") PAIR_RATIOS+=("$pr")
done
HWM_END=$(vm_kib "${OP_PID[$MAIN]}" VmHWM)
for level in "${LEVELS[@]}"; do alive_or_warn "${OP_PID[$level]}" "outpost (log=$level)"; done

# ---- results
NGINX_RPS=$(median "${NGINX_RPS_ALL[@]}")
echo
echo "=== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)) ==="
printf 'small  nginx                %10.0f req/s   (rounds: %s)\n' "$NGINX_RPS" "${NGINX_RPS_ALL[*]}"
for level in "${LEVELS[@]}"; do
  # shellcheck disable=SC2086
  r=$(median ${OP_RPS_ALL[$level]})
  printf 'small  outpost log=%-5s     %10.0f req/s   (rounds:%s)  outpost/nginx %s\n' \
    "$level" "$r" "${OP_RPS_ALL[$level]}" "$(ratio "$r" "$NGINX_RPS")"
  # shellcheck disable=SC2086
  r=$(median ${OP_BLOB_RPS_ALL[$level]})
  printf 'small  outpost log=%-5s blob%10.0f req/s   (rounds:%s)  outpost/nginx %s  (2-byte blob GET)\n' \
    "$level" "$r" "${OP_BLOB_RPS_ALL[$level]}" "$(ratio "$r" "$NGINX_RPS")"
  lines=$(wc -l < "${OP_DIR[$level]}/stderr.log")
  bytes=$(stat -c %s "${OP_DIR[$level]}/stderr.log")
  printf '       (log=%s wrote %d lines, %d bytes to its stderr file)\n' "$level" "$lines" "$bytes"
done
if [ "${#LEVELS[@]}" -ge 2 ]; then
  # shellcheck disable=SC2086
  echo "small  outpost ${LEVELS[0]}/${LEVELS[1]} ratio $(ratio "$(median ${OP_RPS_ALL[${LEVELS[0]}]})" "$(median ${OP_RPS_ALL[${LEVELS[1]}]})") (cost of the access log)"
fi
NB=$(median "${NGINX_BIG_ALL[@]}") OB=$(median "${OUTPOST_BIG_ALL[@]}")
BR=$(ratio "$OB" "$NB")
echo "big    nginx   ${NB} MiB/s median (runs: ${NGINX_BIG_ALL[*]})"
echo "big    outpost ${OB} MiB/s median (runs: ${OUTPOST_BIG_ALL[*]})"
PR=$(median "${PAIR_RATIOS[@]}")
echo "big    outpost/nginx ratio of medians $BR, median of per-run ratios $PR (runs: ${PAIR_RATIOS[*]})"
echo "       (target >= 0.95: $(awk -v r="$PR" 'BEGIN { print (r >= 0.95 ? "met" : "NOT met") }') by the per-run median)"
echo "big    push into outpost ${push_secs}s, ${PUSH_MIBS} MiB/s (monolithic POST), server CPU ${PUSH_CPU} s"
if [ -n "$DIST_PUSH_SECS" ]; then
  echo "big    push into docker-registry ${DIST_PUSH_SECS}s (POST + PUT), server CPU ${DIST_PUSH_CPU} s"
  echo "big    push outpost/distribution: time ratio $(ratio "$push_secs" "$DIST_PUSH_SECS"), CPU ratio $(ratio "$PUSH_CPU" "$DIST_PUSH_CPU") (< 1: outpost cheaper)"
fi
echo "outpost (log=$MAIN) peak RSS (VmHWM): after small ${HWM_AFTER_SMALL} KiB, after push ${HWM_AFTER_PUSH} KiB, end ${HWM_END} KiB" \
  "(target < 32768 KiB: $( [ "$HWM_END" -lt 32768 ] && echo met || echo "NOT met"))"
echo "       samples (VmRSS max over the run): $(awk 'BEGIN {m=0} $2 > m {m=$2} END {print m}' "$TMP/rss-$MAIN.txt") KiB"
for level in "${LEVELS[@]:1}"; do
  echo "outpost (log=$level) peak RSS (VmHWM, small requests only): $(vm_kib "${OP_PID[$level]}" VmHWM) KiB"
done
for level in "${LEVELS[@]}"; do
  if grep -qE 'level=(error|warn)' "${OP_DIR[$level]}/stderr.log"; then
    echo "outpost (log=$level) warnings/errors during the run:"
    grep -E 'level=(error|warn)' "${OP_DIR[$level]}/stderr.log" | tail -5
  fi
done
