#!/bin/bash
# Proves that clients hanging up with reads in flight take nothing down
# (nbdkit before 1.33.10 aborted the whole server on it, assertion
# "sock >= 0" in raw_send_socket):
#  - nbdkit's own repro, without s3bd: nbdcopy from nbdkit's pattern
#    plugin with the error filter failing half the reads, 4 times: no
#    assertion, nbdkit exits by itself;
#  - 32 clients reading random ranges of an s3bd device, one of them
#    killed -9 every 2 s for 20 s (a new one takes its place): the server
#    stays up and serves a new client afterwards, and every byte any
#    client read matches the expected device.
. "$(dirname "$0")/lib.sh"
need_plugin
need_fixed_nbdkit
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"

for i in 1 2 3 4; do
  rc=0
  timeout -k 5 60 nbdcopy -- [ nbdkit --exit-with-parent --filter=error pattern 5M \
    error-pread-rate=0.5 ] null: > "$TMP/repro.$i" 2>&1 || rc=$?
  check "repro $i: nbdcopy gets errors (rc $rc), nbdkit no assertion" \
    bash -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && ! grep -Eq "Assertion|Aborted|core dumped" "$2"' \
    _ "$rc" "$TMP/repro.$i"
done

start_server
s3 mb s3://dev
{
  for i in $(seq -w 0 199); do echo "$(( (10#$i * 104729) % 1048576 + 1 )) f/$i"; done
  echo "33554432 big.bin"
} > "$TMP/spec"
upload s3://dev/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://dev/ds/ -o "$TMP/dev.s3bd"
make_expected "$TMP/dev.s3bd" "$TMP/expected.img"
# A small cache: clients keep fetching, so reads are in flight when the
# kill comes.
start_nbdkit "$TMP/nbd.sock" "$TMP/dev.s3bd" cache-size=32M
uri="nbd+unix:///?socket=$TMP/nbd.sock"

# One client: random reads of 1 byte to 1 MiB, each checked, with up to 8
# in flight (libnbd's async API), until it is killed or 40 s have passed.
# It appends "ok N" after each checked batch and "BAD ..." on a mismatch.
cat > "$TMP/client.py" <<'PY'
import random, sys, time, nbd
uri, expected, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
rng = random.Random(seed)
f = open(expected, 'rb')
log = open(out, 'a', buffering=1)
deadline = time.monotonic() + 40
n = 0
while time.monotonic() < deadline:
    batch = []
    for _ in range(8):
        off = rng.randrange(size)
        ln = min(rng.randrange(1, 1 << 20), size - off)
        buf = nbd.Buffer(ln)
        batch.append((off, ln, buf, h.aio_pread(buf, off)))
    for off, ln, buf, cookie in batch:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
        f.seek(off)
        if buf.to_bytearray() != f.read(ln):
            log.write('BAD %d+%d\n' % (off, ln))
            sys.exit(1)
        n += 1
    log.write('ok %d\n' % n)
PY
clients=()
spawn () {
  /usr/bin/python3 -I "$TMP/client.py" "$uri" "$TMP/expected.img" "$TMP/client.$1.log" "$1" \
    > /dev/null 2>&1 &
  clients[$1]=$!
}
for i in $(seq 0 31); do spawn "$i"; done
sleep 2
killed=0
for round in $(seq 10); do
  victim=$((RANDOM % 32))
  kill -9 "${clients[$victim]}" 2>/dev/null && killed=$((killed + 1))
  wait "${clients[$victim]}" 2>/dev/null || true
  spawn "$victim"
  sleep 2
done
for pid in "${clients[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
for pid in "${clients[@]}"; do wait "$pid" 2>/dev/null || true; done
reads=$(awk '$1 == "ok" { n++ } END { print n + 0 }' "$TMP"/client.*.log)
echo "killed $killed clients; $reads checked batches of 8 reads"
check "10 clients were killed -9 mid-read" test "$killed" -eq 10
check "nbdkit is still running" kill -0 "$NBDKIT_PID"
check "nbdkit logged no assertion" bash -c '! grep -Eq "Assertion|Aborted" "$1"' _ "$TMP/nbdkit.log"
check "every byte read was right" bash -c '! grep -q BAD "$@"' _ "$TMP"/client.*.log
check "the clients read a lot" test "$reads" -ge 100
check "a new client after it all reads the right bytes" \
  bash -c 'cmp <(nbdcopy "$1" - | head -c 16777216) <(head -c 16777216 "$2")' _ "$uri" "$TMP/expected.img"
stop_nbdkit
finish
