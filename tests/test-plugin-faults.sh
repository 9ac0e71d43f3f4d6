#!/bin/bash
# Proves that faults between the plugin and S3 never give a wrong byte:
# with tests/fault-proxy.py on 127.0.0.1 between nbdkit and the S3
# server, for each fault that clears (a share of the GETs fails: resets
# mid-body, short bodies, a 30% SlowDown storm, 200 for 206, shifted,
# garbage, missing Content-Range, a wrong total, stalls, hangs, latency)
# the whole device of a 1,500-object dataset reads back byte-identical
# with nbdcopy, no GET fails for good, and the plugin's stats line counts
# the retries; for each fault that never clears (every GET hangs,
# trickles at 2 KiB/s, is throttled, gets a 200 or a garbage
# Content-Range) reads fail with EIO within timeout= (+1.5 s for the
# client), nbdkit stays up, the log names the reason, and once the fault
# is gone the same reads return the right bytes.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
command -v curl >/dev/null || skip "curl is needed"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
start_server
s3 mb s3://flt
# 1,500 small objects (one GET each, read across file boundaries by the
# readahead) and two of a few MiB (several GETs each).
{
  for i in $(seq 0 1499); do echo "$(( (i * 7919) % 20000 + 1 )) small/$(printf %04d "$i")"; done
  echo "$((5 * 1048576 + 3)) big/a.bin"
  echo "$((3 * 1048576 + 4097)) big/b.bin"
} > "$TMP/spec"
upload s3://flt/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://flt/ds/ -o "$TMP/all.s3bd"
make_expected "$TMP/all.s3bd" "$TMP/all.img"
# One object in six, big/a.bin among them, for the faults but the storm:
# each reads a whole device in a few seconds.
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style --shard 0/6 s3://flt/ds/ -o "$TMP/part.s3bd"
make_expected "$TMP/part.s3bd" "$TMP/part.img"
# Small objects only (every read a whole object, checked against its
# ETag), and the two big ones only (fetched in ranges).
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style --shard 0/6 s3://flt/ds/small/ -o "$TMP/small.s3bd"
make_expected "$TMP/small.s3bd" "$TMP/small.img"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://flt/ds/big/ -o "$TMP/big.s3bd"
make_expected "$TMP/big.s3bd" "$TMP/big.img"

/usr/bin/python3 -I "$S3BD_SOURCE_DIR/tests/fault-proxy.py" \
  --upstream "$S3BD_TEST_ENDPOINT" > "$TMP/proxy.port" 2> "$TMP/proxy.log" &
proxy_pid=$!
trap 'kill "$proxy_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [ -s "$TMP/proxy.port" ] && break; sleep 0.05; done
proxy=http://127.0.0.1:$(head -n 1 "$TMP/proxy.port")
# fault MODE RATE [K=V&...]: what the proxy does from now on.
fault () { curl -sf "$proxy/__fault/set?mode=$1&rate=$2${3:+&$3}" >/dev/null; }
proxy_faults () { curl -sf "$proxy/__fault/stats" | awk '{ print $NF }'; }
fault none 0
check "the proxy forwards signed requests (SigV4 survives it)" \
  bash -c '"$1" --endpoint "$2" --path-style ls s3://flt/ds/big/ | grep -q a.bin' _ "$S3BD_S3" "$proxy"

uri="nbd+unix:///?socket=$TMP/nbd.sock"
nbdkit_alive () { kill -0 "$NBDKIT_PID" 2>/dev/null; }
# stat_field NAME: a number from nbdkit's stats line at exit.
stat_field () {
  grep -o "s3bd: stats: .*" "$TMP/nbdkit.log" | grep -o "$1 [0-9]*" | head -n 1 | cut -d' ' -f2
}
# plugin INDEX PARAM...: nbdkit through the proxy.  A short
# stall-timeout so that stalls and hangs cost 2 s, not 5.
plugin () {
  local index=$1
  shift
  S3BD_TEST_ENDPOINT=$proxy start_nbdkit "$TMP/nbd.sock" "$TMP/$index.s3bd" \
    cache-size=256M stall-timeout=2 "$@"
}

summary=()
# read_through INDEX MODE RATE [K=V&...]: the whole device, byte-identical.
read_through () {
  local index=$1 mode=$2 rate=$3 extra=${4:-} t0 secs faults retries failed
  # timeout= as by default, 60 s: in a 30% storm one GET in a few
  # thousand meets 7 SlowDowns in a row, and backs off 20-30 s in all.
  plugin "$index" timeout=60
  fault "$mode" "$rate" "$extra"
  t0=$(date +%s.%N)
  rm -f "$TMP/copy.img"
  timeout 120 nbdcopy --connections=4 "$uri" "$TMP/copy.img" 2> "$TMP/nbdcopy.err" || true
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  faults=$(proxy_faults)
  fault none 0
  check "$mode at $rate: the whole device reads back byte-identical" \
    cmp "$TMP/$index.img" "$TMP/copy.img"
  check "$mode at $rate: nbdkit stayed up" nbdkit_alive
  stop_nbdkit
  retries=$(stat_field retries)
  failed=$(stat_field failed)
  if [ "$mode" != none ]; then
    check "$mode at $rate: the proxy made faults ($faults)" test "${faults:-0}" -gt 0
  fi
  # A latency fault is no failure, nor is a 200 whose body happens to be
  # the whole range (most GETs here are of a whole small object): only
  # the others must be retried.
  if [ "$mode" = flip ]; then
    mism=$(grep -o "s3bd: stats: .*" "$TMP/nbdkit.log" | sed -n 's/.*against their MD5 (\([0-9]*\) mismatched.*/\1/p' | head -n 1)
    check "$mode at $rate: the MD5 checks caught the damage ($mism GETs)" test "${mism:-0}" -gt 0
  elif [ "$mode" != none ] && [ "$mode" != latency ] && [ "$mode" != whole ]; then
    check "$mode at $rate: the stats count retries ($retries)" test "${retries:-0}" -gt 0
  fi
  check "$mode at $rate: no GET failed for good (failed $failed)" test "$failed" = 0
  summary+=("$(printf '%-9s %-4s %-5s faults %5s, retries %5s, failed %s, read in %5s s' \
    "$mode" "$index" "$rate" "$faults" "$retries" "$failed" "$secs")")
  cat "$TMP/nbdcopy.err" >&2
  grep -m 5 "nbdkit: error:" "$TMP/nbdkit.log" >&2 || true
  mv "$TMP/nbdkit.log" "$TMP/nbdkit-$mode.log"
}

# The storm over all 1,502 objects, and the same read without faults.
read_through all none 0
read_through all slowdown 0.3
read_through part reset 0.1
read_through part short 0.1
read_through part whole 0.2
read_through part shift 0.1
read_through part garbage 0.1
read_through part no-range 0.1
read_through part total 0.1
read_through part stall 0.03 "stall=30"
read_through part hang 0.03 "stall=30"
read_through part latency 1 "latency=100"
# A byte changed on the way, which no header shows: whole-object GETs are
# checked against the ETag's MD5 and fetched again.
read_through small flip 0.1
grep -m 1 -h "s3bd: GET .*attempt 1: garbage Content-Range" "$TMP/nbdkit-garbage.log" || true
check "a garbage Content-Range is logged as such, with the retry" \
  grep -q "s3bd: GET s3://flt/ds/.* bytes .*: attempt [0-9]*: garbage Content-Range in the response: asked for bytes [0-9]*-[0-9]*, got 'bytes=[0-9]*-[0-9]*'; retry in [0-9]* ms" \
  "$TMP/nbdkit-garbage.log"
check "a shifted Content-Range is logged with the range it gave" \
  grep -q "attempt [0-9]*: wrong Content-Range in the response: asked for bytes \([0-9]*\)-[0-9]*, got bytes [0-9]*-[0-9]*/[0-9]*; retry in" \
  "$TMP/nbdkit-shift.log"
check "a wrong total is logged against the object's size" \
  grep -q "attempt [0-9]*: wrong Content-Range total in the response: bytes [0-9-]*/[0-9]*, the object has [0-9]* bytes; retry in" \
  "$TMP/nbdkit-total.log"

# ---- Faults that never clear ----
# Three 64 KiB reads of data not read before (a fresh nbdkit, no
# readahead), on three connections at once; each must fail with EIO
# within timeout= + 1.5 s.  Then the fault goes, and the same reads
# succeed on the same nbdkit.
timeout=5
bound=$(awk -v t="$timeout" 'BEGIN { printf "%.1f", t + 1.5 }')
cat > "$TMP/reader.py" <<'PY'
# reader.py URI EXPECTED OFF: one 64 KiB pread; prints "OK|WRONG|ERROR
# <errno> SECONDS".
import errno, sys, time, nbd
uri, expected, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
t0 = time.monotonic()
try:
    data = h.pread(65536, off)
    with open(expected, 'rb') as f:
        f.seek(off)
        res = 'OK' if f.read(65536) == data else 'WRONG'
except nbd.Error as e:
    res = 'ERROR %s' % (e.errno if isinstance(e.errno, str)
                        else errno.errorcode.get(e.errno, e.errno))
print('%s %.2f' % (res, time.monotonic() - t0))
PY
read -r big_first < <(awk -F'\t' '$1 == "big/a.bin" { print $5 }' "$TMP/part.img.dump")
offs=()
for i in 0 1 2; do offs+=($(( big_first * 4096 + i * 1048576 + 8192 ))); done
read3 () {  # OUT: the three reads at once
  local pids=() i
  for i in 0 1 2; do
    timeout 60 /usr/bin/python3 -I "$TMP/reader.py" "$uri" "$TMP/part.img" "${offs[$i]}" > "$1.$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  cat "$1".[012] > "$1"
}
all_eio_within () {  # OUT
  awk -v max="$bound" '$1 == "ERROR" && $2 == "EIO" && $3 <= max { ok++ }
    END { exit ok == 3 && NR == 3 ? 0 : 1 }' "$1"
}
all_ok () { awk '$1 == "OK" { ok++ } END { exit ok == 3 && NR == 3 ? 0 : 1 }' "$1"; }
# never_clears MODE RATE K=V LOG_PATTERN
never_clears () {
  local mode=$1 rate=$2 extra=$3 pattern=$4
  plugin part readahead-max=0 timeout=$timeout
  fault "$mode" "$rate" "$extra"
  read3 "$TMP/nc-$mode.out"
  fault none 0
  echo "$mode: $(tr '\n' ' ' < "$TMP/nc-$mode.out")"
  check "$mode forever: every read fails with EIO within $bound s" all_eio_within "$TMP/nc-$mode.out"
  check "$mode forever: nbdkit stayed up" nbdkit_alive
  check "$mode forever: the log says why" grep -q "$pattern" "$TMP/nbdkit.log"
  grep -m 1 "nbdkit: error: GET s3://flt/ds/big/a.bin" "$TMP/nbdkit.log" || true
  read3 "$TMP/nc-$mode-after.out"
  check "$mode gone: the same reads return the right bytes" all_ok "$TMP/nc-$mode-after.out"
  stop_nbdkit
  summary+=("$(printf '%-9s forever: %s' "$mode" "$(awk '{ printf "%s %s s; ", $2, $3 }' "$TMP/nc-$mode.out")")")
  mv "$TMP/nbdkit.log" "$TMP/nbdkit-nc-$mode.log"
}
never_clears hang 1 "stall=60" "Operation timed out after\|Operation too slow"
never_clears trickle 1 "trickle=2048" "Operation timed out after"
never_clears slowdown 1 "" "HTTP 503 SlowDown: Please reduce your request rate"
never_clears whole 1 "" "server ignored the range (HTTP 200"
never_clears garbage 1 "" "garbage Content-Range in the response"

# ---- Hydration reads large objects back ----
# The first fill GET gets one byte changed; the object (fetched in 1 MiB
# GETs) is read back from the copy once complete, found wrong, and
# fetched again: the copy ends exact.
fault flip 1 "limit=1"
check "hydration: s3bd-preload through a flipped byte exits 0" \
  "$S3BD_BUILD_DIR/mkimage/s3bd-preload" --endpoint "$proxy" --path-style --no-check \
  --get-size 1M "$TMP/big.s3bd" "$TMP/big.copy" 2> "$TMP/preload.err"
check "hydration: the proxy changed one byte" test "$(proxy_faults)" = 1
fault none 0
check "hydration: the read-back check found it and fetched it again" \
  grep -q "the copy does not match the ETag's MD5 (corrupted on the way): it is fetched again" "$TMP/preload.err"
check "hydration: the copy is exact" cmp "$TMP/big.img" "$TMP/big.copy"

printf '%s\n' "${summary[@]}"
finish
