#!/bin/bash
# Proves that the plugin serves exactly the right bytes across the whole
# device: metadata, holes, every data extent, reads spanning file and
# extent boundaries, unaligned reads; through several NBD connections at
# once; with extents reporting the unused space as holes.  The expected
# device is the materialised index filled with each object's pattern at
# the blocks the index records.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
start_server
s3 mb s3://dev
{
  echo "0 a/empty"
  echo "1 a/one"
  echo "4095 a/b4095"
  echo "4096 a/b4096"
  echo "4097 a/b4097"
  echo "150000000 big/over-four-extents.bin"
  for i in $(seq -w 0 299); do echo "$(( (10#$i * 7919) % 300000 )) small/f$i"; done
  for i in $(seq -w 0 9); do echo "$(( 10#$i * 1048576 + 17 )) mid/m$i"; done
} > "$TMP/spec"
upload s3://dev/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://dev/ds/ -o "$TMP/dev.s3bd"
make_expected "$TMP/dev.s3bd" "$TMP/expected.img"

start_nbdkit "$TMP/nbd.sock" "$TMP/dev.s3bd" cache-size=64M
uri="nbd+unix:///?socket=$TMP/nbd.sock"

check "device size equals the image" \
  test "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$TMP/expected.img")"
nbdcopy --connections=4 "$uri" "$TMP/copy.img"
check "the whole device, copied over 4 connections, equals the expected bytes" \
  cmp "$TMP/expected.img" "$TMP/copy.img"
rm -f "$TMP/copy.img"

nbdinfo --map "$uri" > "$TMP/map"
check "extents report unused space as holes" grep -q "hole,zero" "$TMP/map"

# Random unaligned reads, and reads straddling every file boundary.
/usr/bin/python3 -I - "$uri" "$TMP/expected.img" "$TMP/expected.img.dump" > "$TMP/random.out" <<'PY'
import random, sys, nbd
uri, expected, dump = sys.argv[1:]
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
rng = random.Random(42)
bad = 0
with open(expected, 'rb') as f:
    def check(off, n):
        global bad
        n = min(n, size - off)
        if n <= 0:
            return
        f.seek(off)
        if h.pread(n, off) != f.read(n):
            bad += 1
            print('MISMATCH at %d+%d' % (off, n))
    for _ in range(3000):
        check(rng.randrange(size), rng.randrange(1, 300000))
    # Around every object's start and end: file and extent boundaries.
    for line in open(dump):
        _, _, _, osize, first, _ = line.rstrip('\n').split('\t')
        start = int(first) * 4096
        end = start + int(osize)
        for off in (start - 1, start, end - 1, end, end + 4095):
            if 0 <= off < size:
                check(off, rng.randrange(1, 9000))
    # Reads of the maximum size (1 MiB), each over many small files.
    for off in range(0, 32 << 20, 1 << 20):
        check(off, 1 << 20)
print('bad %d' % bad)
PY
check "random unaligned reads and reads across boundaries are exact" grep -qx "bad 0" "$TMP/random.out"

# Four connections reading the same range at the same time, each as 20
# reads of the maximum size (1 MiB) in flight at once.
same_off=$((145 * 1024 * 1024))
cat > "$TMP/same.py" <<'PY'
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
off = int(sys.argv[2])
bufs = [nbd.Buffer(1 << 20) for _ in range(20)]
cookies = [h.aio_pread(b, off + (i << 20)) for i, b in enumerate(bufs)]
for c in cookies:
    while not h.aio_command_completed(c):
        h.poll(-1)
for b in bufs:
    sys.stdout.buffer.write(b.to_bytearray())
PY
pids=()
for i in 1 2 3 4; do
  /usr/bin/python3 -I "$TMP/same.py" "$uri" "$same_off" > "$TMP/same.$i" &
  pids+=($!)
done
wait "${pids[@]}"   # not a bare wait: nbdkit is a background job too
check "4 connections reading the same range all get the same bytes" \
  bash -c 'for i in 1 2 3 4; do cmp -n $((20*1024*1024)) "$1/same.$i" <(tail -c +$(($2 + 1)) "$1/expected.img") || exit 1; done' _ "$TMP" "$same_off"
stop_nbdkit
check "nbdkit printed a stats line at exit" grep -q "s3bd: stats: GETs" "$TMP/nbdkit.log"
grep "s3bd: stats" "$TMP/nbdkit.log" || true
finish
