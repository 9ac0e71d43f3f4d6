#!/bin/bash
# Proves hydrate=: the plugin keeps every byte it fetches in a local copy,
# fills the rest in the background, and serves the copy without S3.
#   A. Hydrate with the fill while 4 connections copy the whole device:
#      the device is right; once the stats say complete, the copy equals
#      the image byte for byte (metadata, data, zero tails, holes).
#   B. The S3 server stopped: started again on the complete copy, nbdkit
#      needs no S3 (no start-up check) and serves every byte from it.
#   C. kill -9 of nbdkit during the fill at three moments, each time a
#      restart: the state says what was durable, the device read during
#      the restarted fill is right, and the fill finishes with the copy
#      equal to the image.
#   D. Refusals that change nothing: another image's state, a truncated
#      and a corrupted state, a copy truncated under its state, a file that
#      is not a copy, hydrate-state= alone; a block device too small.
#   E. An object changed in S3 after indexing: its bytes give EIO, never a
#      mix; every other byte reaches the copy; the copy is not complete.
#   F. hydrate-fill=false keeps only what was read.
#   G. Through the kernel (s3bd-attach, FUSE + loop): every file read
#      through the mount while the fill runs; detached, S3 stopped,
#      attached again on the complete copy: every file again.  Then
#      --hydrate --wait mounts only once the copy is complete.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
start_server
s3 mb s3://hyd
{
  echo "0 a/empty"
  echo "1 a/one"
  echo "4097 a/b4097"
  echo "70000000 big/b1.bin"
  echo "30000017 big/b2.bin"
  for i in $(seq -w 0 399); do echo "$(( (10#$i * 7919) % 200000 + 1 )) small/f$i"; done
} > "$TMP/spec"
upload s3://hyd/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://hyd/ds/ -o "$TMP/hyd.s3bd"
make_expected "$TMP/hyd.s3bd" "$TMP/expected.img"
uri="nbd+unix:///?socket=$TMP/nbd.sock"

# wait_complete STATS SECONDS: until the stats file says complete.
wait_complete () {
  for _ in $(seq $(($2 * 10))); do
    grep -q "complete" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- A ---
start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" cache-size=64M \
  hydrate="$TMP/copy" stats-file="$TMP/stats"
nbdcopy --connections=4 "$uri" "$TMP/read.img"
check "A: the device read during the fill equals the image" \
  cmp "$TMP/expected.img" "$TMP/read.img"
check "A: the stats say complete within 60 s" wait_complete "$TMP/stats" 60
check "A: the copy is the size of the device" \
  test "$(stat -c %s "$TMP/copy")" -eq "$(stat -c %s "$TMP/expected.img")"
check "A: the copy equals the image byte for byte" cmp "$TMP/expected.img" "$TMP/copy"
check "A: the state file is beside the copy" test -s "$TMP/copy.s3bd-state"
check "A: the copy is sparse (holes not written)" \
  test "$(du -k "$TMP/copy" | cut -f1)" -lt "$(( $(stat -c %s "$TMP/copy") / 1024 ))"
stop_nbdkit
check "A: hydration completion was logged" grep -q "hydration complete" "$TMP/nbdkit.log"
grep "s3bd: stats" "$TMP/nbdkit.log" | tail -1
rm -f "$TMP/read.img"

# --- B ---
"$S3BD_SOURCE_DIR/scripts/s3-server" stop --keep "$S3BD_TEST_SERVER_DIR"
start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" cache-size=64M hydrate="$TMP/copy"
check "B: the start-up says the copy is complete" grep -q "complete: S3 is not needed" "$TMP/nbdkit.log"
nbdcopy --connections=4 "$uri" "$TMP/read.img"
check "B: with S3 stopped, every byte is served from the copy" \
  cmp "$TMP/expected.img" "$TMP/read.img"
stop_nbdkit
check "B: no GET was sent" grep -q "stats: GETs 0 " "$TMP/nbdkit.log"
rm -f "$TMP/read.img"
env=$("$S3BD_SOURCE_DIR/scripts/s3-server" restart "$S3BD_TEST_SERVER_DIR") \
  || { echo "FAIL: the S3 server did not restart" >&2; exit 1; }
eval "$env"

# --- C ---
# A fill held to 20 MB/s takes long enough to be killed.
slow=(cache-size=64M hydrate="$TMP/kill" hydrate-requests=2 max-fetch=1M
      hydrate-max-rate=20M stats-file="$TMP/kstats")
# The bytes the copy held at start-up, as the plugin reports them.
present_at_start () { sed -n 's/.*hydrate [^ ]*: \([0-9]*\) of .*/\1/p' "$TMP/nbdkit.log" | tail -1; }
starts=()
for delay in 0.3 1.0 1.7; do
  start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" "${slow[@]}"
  starts+=("$(present_at_start)")
  # Reads while the fill runs: part from the copy, part from S3.
  /usr/bin/python3 -I - "$uri" "$TMP/expected.img" > "$TMP/c.out" <<'PY'
import random, sys, nbd
uri, expected = sys.argv[1:]
h = nbd.NBD(); h.connect_uri(uri)
size = h.get_size(); rng = random.Random()
bad = 0
with open(expected, 'rb') as f:
    for _ in range(200):
        off = rng.randrange(size); n = min(rng.randrange(1, 600000), size - off)
        f.seek(off)
        if h.pread(n, off) != f.read(n):
            bad += 1
print('bad %d' % bad)
PY
  check "C: random reads during the fill (run $((${#starts[@]}))) are exact" grep -qx "bad 0" "$TMP/c.out"
  sleep "$delay"
  kill -9 "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || true; NBDKIT_PID=
done
start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" cache-size=64M hydrate="$TMP/kill" \
  stats-file="$TMP/kstats"
starts+=("$(present_at_start)")
echo "bytes there at each start: ${starts[*]}"
check "C: what was durable only grew from start to start, and was kept" \
  bash -c '[ "$1" -le "$2" ] && [ "$2" -le "$3" ] && [ "$3" -le "$4" ] && [ "$4" -gt "$1" ]' _ "${starts[@]}"
check "C: the resumed fill completes" wait_complete "$TMP/kstats" 120
nbdcopy --connections=4 "$uri" "$TMP/read.img"
check "C: the device after the kills equals the image" cmp "$TMP/expected.img" "$TMP/read.img"
stop_nbdkit
check "C: the copy after three kills equals the image" cmp "$TMP/expected.img" "$TMP/kill"
rm -f "$TMP/read.img" "$TMP/kill" "$TMP/kill.s3bd-state"

# --- D ---
# starts_not ARGS...: nbdkit must refuse to start (and say why).
starts_not () {
  timeout -k 5 30 env $(plugin_env) nbdkit -f --log=stderr --unix "$TMP/no.sock" \
    "$S3BD_PLUGIN_SO" endpoint="$S3BD_TEST_ENDPOINT" path-style=true "$@"
}
s3 mb s3://other
echo "5000 x/only" > "$TMP/spec2"
upload s3://other/ds/ "$TMP/spec2"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://other/ds/ -o "$TMP/other.s3bd"
cp "$TMP/copy.s3bd-state" "$TMP/copy.state.good"
sum_before=$(md5sum < "$TMP/copy")
expect_error "D: another image's state is refused" "made for another image" \
  starts_not index="$TMP/other.s3bd" hydrate="$TMP/copy"
head -c 50 "$TMP/copy.state.good" > "$TMP/copy.s3bd-state"
expect_error "D: a truncated state is refused" "truncated" \
  starts_not index="$TMP/hyd.s3bd" hydrate="$TMP/copy"
cp "$TMP/copy.state.good" "$TMP/copy.s3bd-state"
printf '\x00' | dd of="$TMP/copy.s3bd-state" bs=1 seek=80 conv=notrunc status=none
expect_error "D: a corrupted state is refused" "checksum mismatch" \
  starts_not index="$TMP/hyd.s3bd" hydrate="$TMP/copy"
cp "$TMP/copy.state.good" "$TMP/copy.s3bd-state"
check "D: the refusals left the copy as it was" test "$(md5sum < "$TMP/copy")" = "$sum_before"
cp --sparse=always "$TMP/copy" "$TMP/short"
truncate -s 1M "$TMP/short"
cp "$TMP/copy.state.good" "$TMP/short.s3bd-state"
expect_error "D: a copy shorter than its state says is refused" "holds 1048576 bytes where the image has" \
  starts_not index="$TMP/hyd.s3bd" hydrate="$TMP/short"
echo "precious" > "$TMP/notacopy"
expect_error "D: a file that is not a copy is refused" "not a copy s3bd made" \
  starts_not index="$TMP/hyd.s3bd" hydrate="$TMP/notacopy"
check "D: ... and left as it was" grep -qx precious "$TMP/notacopy"
expect_error "D: hydrate-state= alone is refused" "needs hydrate=" \
  starts_not index="$TMP/hyd.s3bd" hydrate-state="$TMP/x"
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null && truncate -s 8M "$TMP/small.bd" \
   && loop=$(losetup -f --show "$TMP/small.bd" 2>/dev/null); then
  expect_error "D: a block device smaller than the image is refused" "the device holds 8388608 bytes" \
    starts_not index="$TMP/hyd.s3bd" hydrate="$loop" hydrate-state="$TMP/bd.state"
  expect_error "D: a block device needs hydrate-state=" "hydrate-state=PATH" \
    starts_not index="$TMP/hyd.s3bd" hydrate="$loop"
  losetup -d "$loop"
else
  echo "note: no loop device (not root, or none free): the block-device refusals are not checked" >&2
fi

# --- E ---
key_off () { awk -F'\t' -v p="$1" '$1 == p { print $5 * 4096, $4 }' "$TMP/expected.img.dump"; }
read -r ch_off ch_len < <(key_off small/f123)
# Other bytes, same size: the ETag changes, the index does not know.
head -c "$ch_len" /dev/urandom > "$TMP/changed"
s3 put s3://hyd/ds/small/f123 "$TMP/changed" >/dev/null
start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" cache-size=64M hydrate="$TMP/chg" \
  stats-file="$TMP/estats"
for _ in $(seq 600); do grep -q "fill is done" "$TMP/nbdkit.log" && break; sleep 0.1; done
check "E: the fill finished and says bytes are missing" grep -q "fill is done but $ch_len bytes are missing" "$TMP/nbdkit.log"
check "E: the log names the changed key" grep -q "small/f123" "$TMP/nbdkit.log"
/usr/bin/python3 -I - "$uri" "$ch_off" "$ch_len" > "$TMP/e.out" <<'PY'
import sys, nbd
uri, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = nbd.NBD(); h.connect_uri(uri)
try:
    h.pread(n, off); print('read')
except nbd.Error as e:
    print('error')
PY
check "E: reading the changed object gives an error, not bytes" grep -qx error "$TMP/e.out"
check "E: the stats do not say complete" bash -c '! grep -q complete "$1"' _ "$TMP/estats"
stop_nbdkit
# Every byte of the copy but the changed object's equals the image.
check "E: the copy holds every other byte" python3 -c '
import sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
off, n = int(sys.argv[3]), int(sys.argv[4])
ok = len(a) == len(b) and a[:off] == b[:off] and a[off + n:] == b[off + n:]
ok = ok and b[off:off + n] == bytes(n)   # never written: still a hole
sys.exit(0 if ok else 1)' "$TMP/expected.img" "$TMP/chg" "$ch_off" "$ch_len"
rm -f "$TMP/chg" "$TMP/chg.s3bd-state"

# --- F ---
read -r b1_off b1_len < <(key_off big/b1.bin)
start_nbdkit "$TMP/nbd.sock" "$TMP/hyd.s3bd" cache-size=64M hydrate="$TMP/lazy" \
  hydrate-fill=false readahead-max=0 check=false stats-file="$TMP/fstats"
/usr/bin/python3 -I -c "
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(4):   # the plugin serves reads of up to 1 MiB
    sys.stdout.buffer.write(h.pread(1 << 20, $b1_off + (i << 20)))" "$uri" > "$TMP/f.out"
sleep 1.5
stop_nbdkit
check "F: the bytes read are right" cmp -n $((4 << 20)) "$TMP/f.out" <(tail -c +$((b1_off + 1)) "$TMP/expected.img")
check "F: the copy holds what was read" cmp -n $((4 << 20)) "$TMP/f.out" <(tail -c +$((b1_off + 1)) "$TMP/lazy")
check "F: and nothing much else (no fill)" \
  test "$(du -k "$TMP/lazy" | cut -f1)" -lt $(( 4096 + 8192 ))

# --- G ---
if [ "$(id -u)" -eq 0 ] && command -v nbdfuse >/dev/null && [ -e /dev/fuse ]; then
  mkdir "$TMP/mnt"
  export S3BD_RUN_DIR=$TMP/run S3BD_PLUGIN=$S3BD_PLUGIN_SO
  nbdkit_env=()
  for e in $(plugin_env); do nbdkit_env+=(--nbdkit-env "$e"); done
  detach () { "$S3BD_SOURCE_DIR/scripts/s3bd-detach" "$TMP/mnt" >/dev/null 2>&1 || true; }
  trap 'detach; cleanup' EXIT
  # The object changed in E keeps its new ETag: G indexes the prefix again.
  "$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://hyd/ds/ -o "$TMP/g.s3bd"
  "$S3BD_MKIMAGE" --dump "$TMP/g.s3bd" > "$TMP/g.dump"
  # The changed object holds random bytes now: leave it out of verify.
  grep -v 'small/f123' "$TMP/g.dump" > "$TMP/g.verify"
  attach () {
    "$S3BD_SOURCE_DIR/scripts/s3bd-attach" --via fuse "${nbdkit_env[@]}" "$@" "$TMP/g.s3bd" "$TMP/mnt" \
      endpoint="$S3BD_TEST_ENDPOINT" path-style=true cache-size=64M 2> "$TMP/attach.err"
  }
  if attach --hydrate "$TMP/g.copy"; then
    check "G: every file read through the mount during the fill is right" \
      "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/g.verify"
    st=$(ls "$TMP"/run/*/stats)
    check "G: the fill completes behind the mount" wait_complete "$st" 120
    detach
    "$S3BD_SOURCE_DIR/scripts/s3-server" stop --keep "$S3BD_TEST_SERVER_DIR"
    if attach --hydrate "$TMP/g.copy"; then
      echo 3 > /proc/sys/vm/drop_caches
      check "G: with S3 stopped, every file through the mount is right" \
        "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/g.verify"
      detach
    else
      cat "$TMP/attach.err" >&2; check "G: attach on the complete copy with S3 stopped" false
    fi
    env=$("$S3BD_SOURCE_DIR/scripts/s3-server" restart "$S3BD_TEST_SERVER_DIR") \
      || { echo "FAIL: the S3 server did not restart" >&2; exit 1; }
    eval "$env"
    if attach --hydrate "$TMP/g.wait" --wait; then
      check "G: --wait mounted only once the copy was complete" \
        grep -q "complete" "$(ls "$TMP"/run/*/stats)"
      check "G: --wait said so" grep -q "g.wait complete" "$TMP/attach.err"
      check "G: every file of the --wait mount is right" \
        "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/g.verify"
      detach
    else
      cat "$TMP/attach.err" >&2; check "G: attach --hydrate --wait" false
    fi
  else
    cat "$TMP/attach.err" >&2
    echo "note: cannot attach a FUSE-backed loop device here: G is not run" >&2
  fi
else
  echo "note: not root or no FUSE: G (through the kernel) is not run" >&2
fi
finish
