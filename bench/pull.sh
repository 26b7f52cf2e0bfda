#!/usr/bin/env bash
# Pull-through benchmark: Outpost vs CNCF distribution's proxy mode, same
# machine, same run.
#
#   bench/pull.sh                      # uses build-bench/src/outpost
#   ROUNDS=7 REPS=7 LAYERS_MIB=64,16,1 OUTPOST_BIN=build-rel/src/outpost bench/pull.sh
#
# What it does:
#   1. builds one image as an OCI layout (tests/e2e/harness.py's
#      make_oci_layout): $LAYERS_MIB layers of random bytes (default 64, 16
#      and 1 MiB) as stored gzip (so skopeo never recompresses them), one
#      config, one manifest, tag "1";
#   2. starts a parent: Debian's docker-registry (distribution 2.8) holding
#      that image as bench/img:1 (pushed with skopeo);
#   3. $ROUNDS rounds, each with two fresh mirrors of that parent and empty
#      storage: Outpost ([parent] url = the parent) and docker-registry in
#      proxy mode (proxy.remoteurl = the parent). Each round times
#        skopeo copy --all --src-tls-verify=false docker://<mirror>/bench/img:1 oci:<fresh dir>
#      cold (mirror empty: every blob comes through from the parent) and then
#      warm (everything cached; tags are still checked with the parent), the
#      two mirrors taking turns to go first;
#   4. warm blob throughput of the 64 MiB layer: $BLOB_FETCHES downloads of
#      it with 1 stream (one curl, sequential, keep-alive) and with 16
#      concurrent streams (one curl --parallel), from Outpost's
#      GET /v2/bench/img/blobs/<digest>, from nginx serving the same file
#      (sendfile, access_log off) and, for reference, from the distribution
#      proxy; aggregate MiB/s = bytes moved / wall time, $REPS repetitions;
#   5. small blob GETs: wrk -t2 -c16 -d$WRK_DURATION on the config blob (< 1 KiB)
#      from each of the three, i.e. the per-request cost of a blob GET;
#   6. prints every raw time and rate, the medians and the ratios, and where
#      the last cold pull's time went in Outpost (fill durations, its log).
#
# Ratios are Outpost / other: for times, < 1 means Outpost is faster; for
# throughput, > 1 means Outpost is faster. Not a test: .ci/run does not run
# it. Needs skopeo, docker-registry, nginx, curl, python3 (.ci/install-deps).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-5}
LAYERS_MIB=${LAYERS_MIB:-64,16,1}
BLOB_FETCHES=${BLOB_FETCHES:-16}
REPS=${REPS:-5}
WRK_DURATION=${WRK_DURATION:-5s}
LOG_LEVEL=${OUTPOST_LOG_LEVEL:-info}

bench_require skopeo nginx curl python3
[ -x /usr/bin/docker-registry ] || { echo "missing /usr/bin/docker-registry: run .ci/install-deps" >&2; exit 2; }
bench_outpost_bin

TMP=$(mktemp -d /tmp/outpost-bench-pull.XXXXXX)
chmod 755 "$TMP"                       # nginx workers run as an unprivileged user
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

SKOPEO=(skopeo --insecure-policy)
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# ---- the image
echo "building the image: layers of $LAYERS_MIB MiB random bytes ..."
python3 - "$TMP/layout" "$LAYERS_MIB" > "$TMP/image.env" <<'EOF'
import gzip, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "e2e"))
from harness import make_oci_layout
path, sizes = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
# gzip (level 0: stored) so that neither the push (docker://) nor the pulls
# (oci:) recompress the layers and every digest stays as written here.
layers = [gzip.compress(os.urandom(n << 20), compresslevel=0, mtime=0) for n in sizes]
lay = make_oci_layout(path, layers=layers, tag="1")
img = lay.images[0]
print(f"MANIFEST_DIGEST={img.manifest_digest}")
print(f"BIG_LAYER={img.layer_digests[0]}")
print(f"CONFIG_DIGEST={img.config_digest}")
print(f"BIG_LAYER_BYTES={len(layers[0])}")
print(f"TOTAL_BYTES={sum(len(b) for b in lay.blobs.values())}")
EOF
# shellcheck disable=SC1091
. "$TMP/image.env"
chmod -R a+rX "$TMP/layout"

# ---- parent
start_distribution "$TMP/parent"
PARENT_URL="http://127.0.0.1:$DIST_PORT"
"${SKOPEO[@]}" copy --all --preserve-digests --dest-tls-verify=false "oci:$TMP/layout:1" \
  "docker://127.0.0.1:$DIST_PORT/bench/img:1" >/dev/null
echo "parent: docker-registry $(/usr/bin/docker-registry --version 2>&1 | awk '{print $NF}') at $PARENT_URL holds bench/img:1 ($MANIFEST_DIGEST, $TOTAL_BYTES bytes)"
echo "outpost: $("$OUTPOST_BIN" version) ($OUTPOST_BIN, log level $LOG_LEVEL)"
echo "skopeo: $(skopeo --version | awk '{print $NF}'), $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

pull() {  # hostport -> seconds (copy into a fresh oci: dir, then removed)
  local dest start
  dest=$(mktemp -d "$TMP/pull.XXXXXX")
  start=$(now_ns)
  if ! "${SKOPEO[@]}" copy --all --src-tls-verify=false \
      "docker://$1/bench/img:1" "oci:$dest/img:1" >"$TMP/skopeo.out" 2>&1; then
    echo "skopeo copy from $1 failed:" >&2; cat "$TMP/skopeo.out" >&2; return 1
  fi
  secs_since "$start"
  rm -rf "$dest"
}

OP_PID="" PX_PID=""
OP_COLD=() OP_WARM=() PX_COLD=() PX_WARM=() COLD_PAIRS=() WARM_PAIRS=()
for round in $(seq 1 "$ROUNDS"); do
  # fresh, empty mirrors (the previous round's are stopped and wiped)
  [ -n "$OP_PID" ] && { bench_stop "$OP_PID"; rm -rf "$TMP/outpost"; }
  [ -n "$PX_PID" ] && { bench_stop "$PX_PID"; rm -rf "$TMP/proxy"; }
  start_outpost "$TMP/outpost" "$LOG_LEVEL" "$PARENT_URL"
  OP_PID=$OUTPOST_PID OP_HOST=127.0.0.1:$OUTPOST_PORT
  start_distribution "$TMP/proxy" "$PARENT_URL"
  PX_PID=$DIST_PID PX_HOST=127.0.0.1:$DIST_PORT
  if (( round % 2 )); then order="op px"; else order="px op"; fi
  for phase in cold warm; do
    for who in $order; do
      if [ "$who" = op ]; then t=$(pull "$OP_HOST"); else t=$(pull "$PX_HOST"); fi
      case "$who-$phase" in
        op-cold) OP_COLD+=("$t") ;; op-warm) OP_WARM+=("$t") ;;
        px-cold) PX_COLD+=("$t") ;; px-warm) PX_WARM+=("$t") ;;
      esac
      printf 'round %d %-4s %-12s %6.3f s\n' "$round" "$phase" \
        "$([ "$who" = op ] && echo outpost || echo distribution)" "$t"
    done
  done
  COLD_PAIRS+=("$(ratio "${OP_COLD[-1]}" "${PX_COLD[-1]}")")
  WARM_PAIRS+=("$(ratio "${OP_WARM[-1]}" "${PX_WARM[-1]}")")
done
OP_HWM=$(vm_kib "$OP_PID" VmHWM)

# ---- warm blob throughput (last round's mirrors hold the layer)
start_nginx "$TMP/nginx" "$TMP/layout"
echo "nginx: worker_processes ${NGINX_WORKERS:-auto}"
hex=${BIG_LAYER#sha256:}
declare -A URL=(
  [outpost]="http://$OP_HOST/v2/bench/img/blobs/$BIG_LAYER"
  [nginx]="http://127.0.0.1:$NGINX_PORT/blobs/sha256/$hex"
  [distribution]="http://$PX_HOST/v2/bench/img/blobs/$BIG_LAYER"
)
for who in outpost nginx distribution; do   # warm the page cache, check bytes
  got=$(curl -fsSL "${URL[$who]}" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$BIG_LAYER" ] || { echo "$who served wrong bytes for the layer: $got" >&2; exit 1; }
done

agg_rate() {  # url streams -> aggregate MiB/s over BLOB_FETCHES downloads
  local url=$1 streams=$2 args=() start out secs
  for _ in $(seq 1 "$BLOB_FETCHES"); do args+=(-o /dev/null "$url"); done
  local par=()
  [ "$streams" -gt 1 ] && par=(--parallel --parallel-immediate --parallel-max "$streams")
  start=$(now_ns)
  out=$(curl -fsSL --no-progress-meter "${par[@]}" -w '%{size_download}\n' "${args[@]}")
  secs=$(secs_since "$start")
  echo "$out" | awk -v want="$BIG_LAYER_BYTES" -v n="$BLOB_FETCHES" -v s="$secs" '
    $1 != want { bad = 1 } END { if (bad || NR != n) { print "short"; exit 1 }
    printf "%.0f", n * want / s / 1048576 }'
}

declare -A RATES PAIRS
echo
for streams in 1 16; do
  for rep in $(seq 1 "$REPS"); do
    if (( rep % 2 )); then whos="outpost nginx distribution"; else whos="nginx outpost distribution"; fi
    line="streams=$streams rep $rep:"
    declare -A this=()
    for who in $whos; do
      r=$(agg_rate "${URL[$who]}" "$streams")
      RATES[$who-$streams]="${RATES[$who-$streams]:-} $r"
      this[$who]=$r
      line="$line $who $r"
    done
    pr=$(ratio "${this[outpost]}" "${this[nginx]}")
    PAIRS[$streams]="${PAIRS[$streams]:-} $pr"
    echo "$line MiB/s; outpost/nginx $pr"
  done
done
# small blob GETs: the config blob ($CONFIG_DIGEST, < 1 KiB) with wrk, which
# weighs the per-request cost of a blob GET (store lookup, open) rather than
# bytes moved.
SMALL_RPS=""
if command -v wrk >/dev/null; then
  chex=${CONFIG_DIGEST#sha256:}
  declare -A SURL=(
    [outpost]="http://$OP_HOST/v2/bench/img/blobs/$CONFIG_DIGEST"
    [nginx]="http://127.0.0.1:$NGINX_PORT/blobs/sha256/$chex"
    [distribution]="http://$PX_HOST/v2/bench/img/blobs/$CONFIG_DIGEST"
  )
  for who in outpost nginx distribution; do
    out=$(wrk -t2 -c16 -d"$WRK_DURATION" "${SURL[$who]}")
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
    if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then rps="$rps(errors!)"; fi
    echo "small blob GET (wrk -t2 -c16 -d$WRK_DURATION): $who $rps req/s"
    SMALL_RPS="$SMALL_RPS $who=$rps"
  done
fi
OP_HWM_END=$(vm_kib "$OP_PID" VmHWM)
alive_or_warn "$OP_PID" outpost
alive_or_warn "$PX_PID" "docker-registry proxy"

# ---- results
med() { median "$@"; }
echo
echo "=== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)) ==="
echo "image: layers $LAYERS_MIB MiB, $TOTAL_BYTES bytes in all; $ROUNDS rounds"
for phase in cold warm; do
  if [ "$phase" = cold ]; then ot=("${OP_COLD[@]}"); pt=("${PX_COLD[@]}"); else ot=("${OP_WARM[@]}"); pt=("${PX_WARM[@]}"); fi
  mo=$(med "${ot[@]}") mp=$(med "${pt[@]}")
  printf 'pull %-4s outpost      %6.3f s median (runs: %s)\n' "$phase" "$mo" "${ot[*]}"
  printf 'pull %-4s distribution %6.3f s median (runs: %s)\n' "$phase" "$mp" "${pt[*]}"
  if [ "$phase" = cold ]; then pairs=("${COLD_PAIRS[@]}"); else pairs=("${WARM_PAIRS[@]}"); fi
  printf 'pull %-4s outpost/distribution time ratio: of medians %s, median per round %s (rounds: %s) (< 1: outpost faster)\n' \
    "$phase" "$(ratio "$mo" "$mp")" "$(med "${pairs[@]}")" "${pairs[*]}"
done
for streams in 1 16; do
  # shellcheck disable=SC2086
  {
    o=$(med ${RATES[outpost-$streams]}) n=$(med ${RATES[nginx-$streams]}) d=$(med ${RATES[distribution-$streams]})
  }
  printf 'blob %2d stream(s) outpost      %6.0f MiB/s median (reps:%s)\n' "$streams" "$o" "${RATES[outpost-$streams]}"
  printf 'blob %2d stream(s) nginx        %6.0f MiB/s median (reps:%s)\n' "$streams" "$n" "${RATES[nginx-$streams]}"
  printf 'blob %2d stream(s) distribution %6.0f MiB/s median (reps:%s)\n' "$streams" "$d" "${RATES[distribution-$streams]}"
  # shellcheck disable=SC2086
  printf 'blob %2d stream(s) outpost/nginx: of medians %s, median per rep %s (reps:%s); outpost/distribution %s (> 1: outpost faster)\n' \
    "$streams" "$(ratio "$o" "$n")" "$(med ${PAIRS[$streams]})" "${PAIRS[$streams]}" "$(ratio "$o" "$d")"
done
if [ -n "$SMALL_RPS" ]; then
  o=$(echo "$SMALL_RPS" | grep -o 'outpost=[0-9]*' | cut -d= -f2)
  n=$(echo "$SMALL_RPS" | grep -o 'nginx=[0-9]*' | cut -d= -f2)
  d=$(echo "$SMALL_RPS" | grep -o 'distribution=[0-9]*' | cut -d= -f2)
  echo "small blob GET req/s:$SMALL_RPS; outpost/nginx $(ratio "$o" "$n"), outpost/distribution $(ratio "$o" "$d")"
fi
echo "outpost peak RSS (VmHWM, last round): after pulls $OP_HWM KiB, after blob reads $OP_HWM_END KiB"
# Where the cold pull's time went in Outpost (last round, from its log): each
# fill from "fill started" (parent's headers in) to "fill committed" (bytes
# hashed, fsynced, renamed, SQLite row), and the client's blob GET duration.
python3 - "$TMP/outpost/stderr.log" <<'EOF'
import re, sys
from datetime import datetime
def ts(line):
    m = re.match(r"ts=(\S+)", line)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() if m else None
start, size, out = {}, {}, []
for line in open(sys.argv[1], errors="replace"):
    d = re.search(r"digest=(sha256:[0-9a-f]{64})", line)
    if 'msg="fill started"' in line and d:
        start[d.group(1)] = ts(line)
        m = re.search(r" size=(\d+)", line)
        size[d.group(1)] = int(m.group(1)) if m else 0
    elif 'msg="fill committed"' in line and d and d.group(1) in start:
        out.append((d.group(1), size[d.group(1)], ts(line) - start[d.group(1)]))
gets = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"method=GET path=/v2/\S+/blobs/(sha256:[0-9a-f]{64}) status=200 .*dur_ms=([0-9.]+)", line)
    if m and m.group(1) not in gets:
        gets[m.group(1)] = float(m.group(2))
for d, n, secs in sorted(out, key=lambda x: -x[1]):
    print(f"outpost cold fill {d[7:19]} {n:>9} bytes: started->committed {secs*1000:7.0f} ms,"
          f" first client GET {gets.get(d, float('nan')):7.0f} ms")
EOF
if grep -qE 'level=(error|warn)' "$TMP/outpost/stderr.log"; then
  echo "outpost warnings/errors (last round):"
  grep -E 'level=(error|warn)' "$TMP/outpost/stderr.log" | tail -5
fi
