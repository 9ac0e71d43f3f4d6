#!/bin/bash
# Proves what the plugin does when the S3 server goes away under it: reads
# wait and retry, then either succeed with exactly the right bytes or fail
# with EIO within the bound that retries=, timeout= and connect-timeout=
# set; never wrong bytes, no crash, no hang; and nothing that failed is
# cached, so the same reads succeed once the server is back.
#   A. The server is stopped in the middle of two sequential readers and
#      started again (same port, same data) 1.5 s later, within the retry
#      bound: both reads complete and every byte equals the source.
#   B. The server is stopped and stays down: reads of uncached data fail
#      with EIO within timeout=, nbdkit lives on, the log names
#      the key; once the server is back the same reads return the right
#      bytes.
#   C. The server is frozen (SIGSTOP: connections are accepted by the
#      kernel, nothing answers): the same bound holds, then SIGCONT and the
#      reads succeed.
. "$(dirname "$0")/lib.sh"
need_plugin
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
command -v timeout >/dev/null || skip "timeout (coreutils) is needed"
start_server
server_dir=$S3BD_TEST_SERVER_DIR
endpoint=$S3BD_TEST_ENDPOINT

# A frozen server must be thawed before anything else, or "s3-server stop"
# waits 5 s for its SIGTERM and then kills it.
server_pgid () { cat "$server_dir/server.pid"; }
thaw () { kill -CONT -- "-$(server_pgid)" 2>/dev/null || true; }
trap 'thaw; cleanup' EXIT

s3 mb s3://rst
# Three 40 MiB files (A reads two, B and C the third) and a few small ones
# in front, so that the big files do not start at the first data block.
{
  for i in 1 2 3; do echo "$((40 * 1048576 + i * 4099)) big/f$i.bin"; done
  echo "100000 a/small1"
  echo "5000 a/small2"
} > "$TMP/spec"
upload s3://rst/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$endpoint" --path-style s3://rst/ds/ -o "$TMP/rst.s3bd"
make_expected "$TMP/rst.s3bd" "$TMP/expected.img"
# extent PATH: "OFFSET LENGTH" of the file's bytes on the device.
extent () {
  awk -F'\t' -v p="$1" '$1 == p { print $5 * 4096, $4 }' "$TMP/expected.img.dump"
}
read -r f1_off f1_len < <(extent big/f1.bin)
read -r f2_off f2_len < <(extent big/f2.bin)
read -r f3_off _ < <(extent big/f3.bin)
if [ -z "$f1_off" ] || [ -z "$f2_off" ] || [ -z "$f3_off" ]; then
  echo "FAIL: files missing from the dump" >&2
  exit 1
fi

uri="nbd+unix:///?socket=$TMP/nbd.sock"
cat > "$TMP/reader.py" <<'PY'
# reader.py stream URI EXPECTED PROGRESS OFF LEN STEP PAUSE
#   reads [OFF, OFF+LEN) STEP bytes at a time, PAUSE seconds apart, checks
#   every byte against EXPECTED, writes the bytes done so far to PROGRESS;
#   prints "bad N errors M seconds S".
# reader.py read URI EXPECTED OFF:LEN...
#   one pread each; prints "OFF OK|WRONG|ERROR <errno> SECONDS" per read.
import errno, os, sys, time, nbd

def errname(e):
    # The binding gives the errno as a name or a number, by version.
    return (e.errno if isinstance(e.errno, str)
            else errno.errorcode.get(e.errno, e.errno))

mode, uri, expected = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(uri)
f = open(expected, 'rb')
if mode == 'stream':
    progress = sys.argv[4]
    off, length, step, pause = (int(sys.argv[5]), int(sys.argv[6]),
                                int(sys.argv[7]), float(sys.argv[8]))
    bad = errors = 0
    t0 = time.monotonic()
    pos = off
    while pos < off + length:
        n = min(step, off + length - pos)
        try:
            data = h.pread(n, pos)
            f.seek(pos)
            if data != f.read(n):
                bad += 1
                print('WRONG BYTES at %d+%d' % (pos, n))
        except nbd.Error as e:
            errors += 1
            print('ERROR %s at %d+%d' % (errname(e), pos, n))
        pos += n
        with open(progress + '.tmp', 'w') as p:
            p.write('%d\n' % (pos - off))
        os.replace(progress + '.tmp', progress)
        time.sleep(pause)
    print('bad %d errors %d seconds %.2f' % (bad, errors,
                                             time.monotonic() - t0))
else:
    for arg in sys.argv[4:]:
        off, n = map(int, arg.split(':'))
        t0 = time.monotonic()
        try:
            data = h.pread(n, off)
            f.seek(off)
            res = 'OK' if f.read(n) == data else 'WRONG'
        except nbd.Error as e:
            res = 'ERROR %s' % errname(e)
        print('%d %s %.2f' % (off, res, time.monotonic() - t0), flush=True)
PY
reader () { timeout 60 /usr/bin/python3 -I "$TMP/reader.py" "$@"; }
# stat_field NAME: a number from the stats line, e.g. "retries".
stat_field () {
  grep -o "$1 [0-9]*" "$TMP/stats" | head -n 1 | cut -d' ' -f2
}
nbdkit_alive () { kill -0 "$NBDKIT_PID" 2>/dev/null; }

# ---- A: stopped mid-read, back within the retry bound ----
# A small cache and a short readahead window: the readers stay a few MiB
# ahead of what is fetched, so GETs are in flight when the server goes.
# retries=20 and timeout=20 outlast an outage of a few seconds by far.
start_nbdkit "$TMP/nbd.sock" "$TMP/rst.s3bd" cache-size=16M \
  readahead-max=4M retries=20 timeout=20 connect-timeout=1 \
  stats-file="$TMP/stats"
mib=1048576
reader stream "$uri" "$TMP/expected.img" "$TMP/progress1" \
  "$f1_off" "$f1_len" "$mib" 0.03 > "$TMP/a1.out" 2>&1 &
r1=$!
reader stream "$uri" "$TMP/expected.img" "$TMP/progress2" \
  "$f2_off" "$f2_len" "$mib" 0.03 > "$TMP/a2.out" 2>&1 &
r2=$!
# Stop the server once both readers are well under way.
for _ in $(seq 200); do
  p1=$(cat "$TMP/progress1" 2>/dev/null || echo 0)
  p2=$(cat "$TMP/progress2" 2>/dev/null || echo 0)
  [ "$p1" -ge $((8 * mib)) ] && [ "$p2" -ge $((8 * mib)) ] && break
  sleep 0.05
done
"$S3BD_SOURCE_DIR/scripts/s3-server" stop --keep "$server_dir"
down_at=$(date +%s.%N)
echo "A: server stopped at $((p1 / mib)) and $((p2 / mib)) MiB of $((f1_len / mib))"
sleep 1.5
p1_down=$(cat "$TMP/progress1")
p2_down=$(cat "$TMP/progress2")
env=$("$S3BD_SOURCE_DIR/scripts/s3-server" restart "$server_dir") \
  || { echo "FAIL: the server did not restart" >&2; exit 1; }
eval "$env"
echo "A: server back after $(awk -v a="$down_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
check "the restarted server has the same address" \
  test "$S3BD_TEST_ENDPOINT" = "$endpoint"
check "the readers stalled while the server was down" \
  test "$p1_down" -lt "$f1_len" -a "$p2_down" -lt "$f2_len"
rc1=0; wait "$r1" || rc1=$?
rc2=0; wait "$r2" || rc2=$?
cat "$TMP/a1.out" "$TMP/a2.out"
check "reader 1 finished" test "$rc1" = 0
check "reader 2 finished" test "$rc2" = 0
check "file 1 read completely, every byte right" grep -q "^bad 0 errors 0 " "$TMP/a1.out"
check "file 2 read completely, every byte right" grep -q "^bad 0 errors 0 " "$TMP/a2.out"
check "nbdkit survived the outage" nbdkit_alive
sleep 1.1   # stats-file is rewritten every second
cat "$TMP/stats"
check "GETs were retried during the outage" test "$(stat_field retries)" -gt 0
check "no GET failed for good" test "$(stat_field failed)" = 0
stop_nbdkit
check "nbdkit exited cleanly" grep -q "s3bd: stats: GETs" "$TMP/nbdkit.log"
mv "$TMP/nbdkit.log" "$TMP/nbdkit-a.log"

# ---- B and C: down for good, then frozen ----
# Reads of chunks not read before (a fresh nbdkit, no readahead), so
# only S3 can serve them.
retries=4 timeout=3 connect_timeout=1
# A new socket: the last nbdkit may have left its own behind.
start_nbdkit "$TMP/nbd2.sock" "$TMP/rst.s3bd" cache-size=16M \
  readahead-max=0 retries=$retries timeout=$timeout \
  connect-timeout=$connect_timeout
uri="nbd+unix:///?socket=$TMP/nbd2.sock"
# The bound on a failing GET: timeout= is its deadline, from submission
# to the end of its last attempt (lib/s3/engine.c gives every attempt
# what is left of it as curl's own timeout, connecting included), so a
# server down or frozen fails a read within timeout= seconds, and 1.5 s
# more for the client on a loaded machine.  With the server down
# (connections refused at once) all retries attempts are made: the
# policy's delays add up to at most 100+200+400 ms, far below timeout=.
bound=$(awk -v t="$timeout" 'BEGIN { printf "%.1f", t + 1.5 }')
echo "B/C: a failing read must fail within $bound s"
# Three 256 KiB reads spread over file 3 for B, three others for C.
b_reads=() c_reads=()
for i in 0 1 2; do
  b_reads+=("$((f3_off + i * 13 * mib + 4096)):262144")
  c_reads+=("$((f3_off + (i * 13 + 6) * mib)):262144")
done
# check_failed OUT COUNT: COUNT reads, each EIO, each within the bound.
check_failed () {
  awk -v n="$2" -v max="$bound" '
    $2 == "ERROR" && $3 == "EIO" && $4 <= max { ok++ }
    END { exit ok == n && NR == n ? 0 : 1 }' "$1"
}
check_ok () {
  awk -v n="$2" '$2 == "OK" { ok++ } END { exit ok == n && NR == n ? 0 : 1 }' "$1"
}

"$S3BD_SOURCE_DIR/scripts/s3-server" stop --keep "$server_dir"
reader read "$uri" "$TMP/expected.img" "${b_reads[@]}" > "$TMP/b.out" || true
cat "$TMP/b.out"
check "B: with the server down, every read fails with EIO within $bound s" \
  check_failed "$TMP/b.out" 3
check "B: nbdkit is still alive" nbdkit_alive
check "B: the log names the key and says how many attempts" \
  grep -q "GET s3://rst/ds/big/f3.bin bytes .*(after $retries attempts in" "$TMP/nbdkit.log"
grep -m 1 "GET s3://rst/ds/big/f3.bin" "$TMP/nbdkit.log" || true
env=$("$S3BD_SOURCE_DIR/scripts/s3-server" restart "$server_dir") \
  || { echo "FAIL: the server did not restart" >&2; exit 1; }
eval "$env"
reader read "$uri" "$TMP/expected.img" "${b_reads[@]}" > "$TMP/b2.out" || true
cat "$TMP/b2.out"
check "B: once the server is back, the same reads return the right bytes" \
  check_ok "$TMP/b2.out" 3

kill -STOP -- "-$(server_pgid)"
# The three at once, on three connections: each waits out the bound.
pids=()
for i in 0 1 2; do
  reader read "$uri" "$TMP/expected.img" "${c_reads[$i]}" > "$TMP/c.out.$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
cat "$TMP"/c.out.[012] > "$TMP/c.out"
cat "$TMP/c.out"
check "C: with the server frozen, every read fails with EIO within $bound s" \
  check_failed "$TMP/c.out" 3
check "C: nbdkit is still alive" nbdkit_alive
# log_names_gets OBJECT_OFFSET...: a failed GET of each range is logged.
log_names_gets () {
  for o in "$@"; do
    grep -q "GET s3://rst/ds/big/f3.bin bytes $o-" "$TMP/nbdkit.log" || return 1
  done
}
check "C: the log names the key and range of each stalled GET" \
  log_names_gets $((6 * mib)) $((19 * mib)) $((32 * mib))
grep "GET s3://rst/ds/big/f3.bin bytes $((6 * mib))-" "$TMP/nbdkit.log" || true
thaw
reader read "$uri" "$TMP/expected.img" "${c_reads[@]}" > "$TMP/c2.out" || true
cat "$TMP/c2.out"
check "C: once the server answers again, the same reads return the right bytes" \
  check_ok "$TMP/c2.out" 3
stop_nbdkit
check "nbdkit exited cleanly" grep -q "s3bd: stats: GETs" "$TMP/nbdkit.log"
grep "s3bd: stats" "$TMP/nbdkit.log" || true
finish
