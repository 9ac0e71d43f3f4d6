#!/bin/bash
# Proves that nbdkit's memory stays within the documented bound under 32
# clients (docs/nbdkit-s3bd-plugin.md, "Memory"):
#   peak RSS <= cache-size + 48 MiB + R x (2 x 1 MiB + chunk-size)
# with R = connections x threads = 32 x 2 = 64 requests at once: here
# cache-size (64 MiB, so that readahead has a budget of 32 MiB beside the
# demand reads) + 192 MiB.  Readahead lives inside cache-size.
#  - the plugin advertises block sizes 1 / 4096 / 1 MiB;
#  - 32 clients for 20 s, each with 8 reads in flight: 20 reading random
#    ranges of 1 byte to 1 MiB (a few exactly 1 MiB), 8 reading 1 MiB at
#    a time in sequence (readahead), 4 reconnecting every 2 s (nbdkit
#    frees and allocates its per-thread buffers); every byte is checked
#    against the expected device; nbdkit's VmHWM must be within the
#    bound (not asserted in the sanitizer build, where the shadow memory
#    and the quarantine make RSS meaningless);
#  - reads and cache requests over 1 MiB (1 MiB + 1, 4 MiB, 64 MiB,
#    nbdkit's own limit) fail with EINVAL, logged; their buffers go back
#    to the kernel (nbdkit's RSS does not grow); the connection, the
#    server and a new client carry on with the right bytes.
. "$(dirname "$0")/lib.sh"
need_plugin
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"

start_server
s3 mb s3://mem
# About 190 MiB of objects for a 64 MiB cache: most reads miss.
{
  for i in $(seq -w 0 119); do echo "$(( (10#$i * 104729) % 2097152 + 1 )) f/$i"; done
  echo "67108864 big.bin"
} > "$TMP/spec"
upload s3://mem/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://mem/ds/ -o "$TMP/mem.s3bd"
make_expected "$TMP/mem.s3bd" "$TMP/expected.img"

cache_mib=64 threads=2 clients=32 mib=1048576
NBDKIT_THREADS=$threads start_nbdkit "$TMP/nbd.sock" "$TMP/mem.s3bd" cache-size=${cache_mib}M
uri="nbd+unix:///?socket=$TMP/nbd.sock"
vm () { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$NBDKIT_PID/status"; }
echo "nbdkit at start: VmRSS $(( $(vm VmRSS) / 1024 )) MiB"

check "block sizes advertised: minimum 1, preferred 4096, maximum 1 MiB" \
  /usr/bin/python3 -I -c '
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
got = [h.get_block_size(k) for k in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]
print("block sizes", got)
sys.exit(got != [1, 4096, 1 << 20])' "$uri"

# client.py URI EXPECTED LOG SEED MODE SECONDS: MODE random, sequential
# or reconnect (random, on a new connection every 2 s); 8 reads in
# flight (libnbd's async API), each checked.  Appends "ok N" at the end,
# "BAD ..." on a mismatch, "ERROR ..." on a failed read.
cat > "$TMP/client.py" <<'PY'
import random, sys, time, nbd
uri, expected, out, seed, mode, secs = sys.argv[1:7]
rng = random.Random(int(seed))
f = open(expected, 'rb')
log = open(out, 'a', buffering=1)
MAX = 1 << 20
deadline = time.monotonic() + float(secs)
n = 0
pos = None
while time.monotonic() < deadline:
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    until = deadline if mode != 'reconnect' else time.monotonic() + 2
    while time.monotonic() < min(deadline, until):
        batch = []
        for _ in range(8):
            if mode == 'sequential':
                if pos is None or pos + MAX > size:
                    pos = rng.randrange(size // 2)
                off, ln = pos, MAX
                pos += MAX
            else:
                ln = MAX if rng.random() < 0.1 else rng.randrange(1, MAX)
                off = rng.randrange(size - ln + 1)
            buf = nbd.Buffer(ln)
            batch.append((off, ln, buf, h.aio_pread(buf, off)))
        for off, ln, buf, cookie in batch:
            try:
                while not h.aio_command_completed(cookie):
                    h.poll(-1)
            except nbd.Error as e:
                log.write('ERROR %d+%d: %s\n' % (off, ln, e))
                sys.exit(1)
            f.seek(off)
            if buf.to_bytearray() != f.read(ln):
                log.write('BAD %d+%d\n' % (off, ln))
                sys.exit(1)
            n += 1
    h.shutdown()
    del h
log.write('ok %d\n' % n)
PY
# The peak as sampled, beside the kernel's own (VmHWM).
(
  peak=0
  while kill -0 "$NBDKIT_PID" 2>/dev/null && [ ! -e "$TMP/stop-sampling" ]; do
    r=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$NBDKIT_PID/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$peak" ] && { peak=$r; echo "$peak" > "$TMP/sampled-peak"; }
    sleep 0.1
  done
) &
sampler=$!
pids=()
for i in $(seq 0 $((clients - 1))); do
  if [ "$i" -lt 20 ]; then mode=random; elif [ "$i" -lt 28 ]; then mode=sequential; else mode=reconnect; fi
  timeout 90 /usr/bin/python3 -I "$TMP/client.py" "$uri" "$TMP/expected.img" "$TMP/client.$i.log" \
    "$i" "$mode" 20 2> "$TMP/client.$i.err" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
hwm=$(vm VmHWM)
touch "$TMP/stop-sampling"
wait "$sampler" || true
reads=$(awk '$1 == "ok" { n += $2 } END { print n + 0 }' "$TMP"/client.*.log)
# The documented bound: cache-size + 48 MiB + R x (2 MiB + chunk-size of
# 256 KiB), R = clients x threads; 192 MiB over cache-size here.
bound_mib=$(( cache_mib + 48 + clients * threads * (2048 + 256) / 1024 ))
peak_mib=$((hwm / 1024))
echo "$reads checked reads by $clients clients (-t $threads); nbdkit peak RSS (VmHWM) $peak_mib MiB, sampled $(( $(cat "$TMP/sampled-peak" 2>/dev/null || echo 0) / 1024 )) MiB; bound $bound_mib MiB"
check "every client finished without an error" test "$failed" -eq 0
check "every byte read was right" bash -c '! grep -hE "BAD|ERROR" "$@"' _ "$TMP"/client.*.log
check "the clients read a lot" test "$reads" -ge 500
check "readahead ran" grep -q "s3bd: readahead " "$TMP/nbdkit.log"
if sanitized_build; then
  echo "NOTE: sanitizer build: peak RSS $peak_mib MiB NOT checked against $bound_mib MiB (ASan's shadow memory and quarantine make it meaningless); the release build checks it" >&2
else
  check "peak RSS $peak_mib MiB <= cache-size + 48 MiB + $((clients * threads)) x 2.25 MiB = $bound_mib MiB" \
    test "$peak_mib" -le "$bound_mib"
fi

# Requests over the maximum: refused with EINVAL, nothing else breaks.
# nbdkit allocates and clears each read's buffer before the plugin sees
# it; the plugin gives a refused read's pages back: nbdkit's RSS, taken
# while the connection (and its 64 MiB buffer) is still open, must not
# have grown by more than 8 MiB.
/usr/bin/python3 -I - "$uri" "$TMP/expected.img" "$NBDKIT_PID" > "$TMP/large.out" 2>&1 <<'PY' || true
import errno, sys, nbd
uri, expected, pid = sys.argv[1:]
def rss():
    for line in open('/proc/%s/status' % pid):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
h = nbd.NBD()
h.connect_uri(uri)
f = open(expected, 'rb')
MAX = 1 << 20
h.pread(MAX, 0)
before = rss()
for what, n in (('read', MAX + 1), ('read', 4 * MAX), ('read', 64 * MAX), ('cache', MAX + 1)):
    try:
        h.pread(n, 4096) if what == 'read' else h.cache(n, 4096)
        print('%s %d: served' % (what, n))
    except nbd.Error as e:
        print('%s %d: %s' % (what, n, 'EINVAL' if e.errnum == errno.EINVAL else e))
f.seek(4096)
print('after: %s' % ('right' if h.pread(MAX, 4096) == f.read(MAX) else 'WRONG'))
print('rss growth %d' % ((rss() - before) // 1024))
PY
cat "$TMP/large.out"
growth=$(awk '$1 == "rss" { print $3 }' "$TMP/large.out")
for n in $((mib + 1)) $((4 * mib)) $((64 * mib)); do
  check "a read of $n bytes fails with EINVAL" grep -qx "read $n: EINVAL" "$TMP/large.out"
done
check "a cache request of $((mib + 1)) bytes fails with EINVAL" grep -qx "cache $((mib + 1)): EINVAL" "$TMP/large.out"
check "the same connection then reads 1 MiB right" grep -qx "after: right" "$TMP/large.out"
if sanitized_build; then
  echo "NOTE: sanitizer build: RSS growth over the refused reads (${growth:-?} MiB) NOT checked" >&2
else
  check "the refused reads' buffers went back to the kernel (RSS +${growth:-?} MiB <= 8 MiB)" \
    test "${growth:-999}" -le 8
fi
check "the refusal is logged with the limit" \
  grep -q "read of 4194304 bytes at 4096: over the maximum block size of 1048576 bytes" "$TMP/nbdkit.log"
check "nbdkit is still running" kill -0 "$NBDKIT_PID"
check "nbdkit logged no assertion" bash -c '! grep -Eq "Assertion|Aborted|AddressSanitizer" "$1"' _ "$TMP/nbdkit.log"
check "a new client reads the first 8 MiB right" /usr/bin/python3 -I -c '
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
f = open(sys.argv[2], "rb")
sys.exit(any(h.pread(1 << 20, o) != f.read(1 << 20) for o in range(0, 8 << 20, 1 << 20)))' \
  "$uri" "$TMP/expected.img"
stop_nbdkit
finish
