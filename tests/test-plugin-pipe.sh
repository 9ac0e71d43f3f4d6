#!/bin/bash
# Proves pipe=: SageMaker's Pipe mode FIFOs from the plugin, every record
# checked against its object.  The reader and the order are written here
# from the documentation (docs/nbdkit-s3bd-plugin.md, "Pipe mode"), not
# from the exporter's code.
#   A. RecordIO, shuffle-seed, epochs=2, while nbdcopy reads the device:
#      each epoch holds every object exactly once, the two orders differ
#      and are the documented permutation; the device is byte-exact; the
#      stats give per-epoch records and bytes; no FIFO is left.
#   B. No seed, no wrapper: the stream is the objects back to back in
#      index (listing) order; a RecordIO stream in that order too.
#   C. compression=gzip: the objects inflated (multi-member, empty, and
#      bigger than a piece), raw and RecordIO.
#   D. pipe-shard=0/2 and 1/2, and pipe-readers=3 over two epochs:
#      disjoint, together complete, split as documented (by bytes).
#   E. pipe-readers=2: reader 0 closes early, then reads the next epoch
#      whole; reader 1 never opens; then a slow reader: nbdkit's RSS stays
#      within the cache bound; one that stalls holds the writer (no more
#      written than the FIFO holds); nbdkit stops cleanly with the FIFO
#      unopened.
#   F. An object changed since indexing: the FIFO ends early before it,
#      every whole record right, the key logged; the next epoch the same.
#   G. Refusals: bad values, pipe keys without pipe=, a missing pipe-dir.
#   H. With hydrate=: an epoch during the fill and one from the complete
#      copy, both right.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
start_server
s3 mb s3://pipe
{
  echo "0 empty"
  echo "1 one"
  echo "4097 b4097"
  echo "3000000 big/three-mb"
  echo "9437185 big/nine-mb"
  for i in $(seq -w 0 59); do echo "131072 small/f$i"; done
  for i in $(seq -w 0 19); do echo "$(( (10#$i * 7919) % 300000 + 1 )) odd/g$i"; done
} > "$TMP/spec"
upload s3://pipe/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://pipe/ds/ -o "$TMP/ds.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/ds.s3bd" > "$TMP/ds.dump"
make_expected "$TMP/ds.s3bd" "$TMP/expected.img"
uri="nbd+unix:///?socket=$TMP/nbd.sock"

cp "$(dirname "$0")/pipeorder.py" "$TMP/"
cat > "$TMP/pipetest.py" <<'PY'
# The reader and the documented order, from the docs alone.
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeorder import cut, open_fifo, parse_recordio, permutation

def load(dump):
    """Objects in index order: by FIRST-BLOCK, ties by path (bytes)."""
    rows = [l.rstrip('\n').split('\t') for l in open(dump, encoding='utf-8')]
    rows.sort(key=lambda r: (int(r[4]), r[0].encode()))
    return [(r[1].split('/', 3)[3], int(r[3])) for r in rows]

def expected_keys(dump, seed, epoch, shard, readers_part):
    objs = load(dump)
    sizes = [s for _, s in objs]
    lst = permutation(len(objs), seed, epoch)
    lst = cut(lst, sizes, *shard)
    lst = cut(lst, sizes, *readers_part)
    return [objs[o][0] for o in lst]

def read_stream(path, limit=None, slow=0.0):
    f = open_fifo(path)
    data = bytearray()
    while limit is None or len(data) < limit:
        b = f.read(65536 if limit is None else min(65536, limit - len(data)))
        if not b:
            break
        data += b
        if slow:
            time.sleep(slow)
    f.close()
    return bytes(data)

_cache = {}
def object_bytes(testdata, key, size, gz):
    if key not in _cache:
        if gz:
            _cache[key] = open(os.path.join(gz, key.replace('/', '_')), 'rb').read()
        else:
            _cache[key] = subprocess.run([testdata, 'gen', key, str(size)],
                                         check=True, capture_output=True).stdout
    return _cache[key]

def main():
    a = dict(x.split('=', 1) for x in sys.argv[1:])
    testdata, dump = a['testdata'], a['dump']
    seed = int(a['seed']) if 'seed' in a else None
    shard = tuple(map(int, a.get('shard', '0/1').split('/')))
    readers = int(a.get('readers', '1'))
    epoch = int(a['epoch'])
    wrap = a.get('wrap', 'recordio')
    gz = a.get('gz')  # a directory of the inflated objects
    limit = int(a['limit']) if 'limit' in a else None
    slow = float(a.get('slow', '0'))
    sizes = dict(load(dump))
    ok = True
    seen = []
    for r in range(readers):
        if 'only' in a and r != int(a['only']):
            continue
        name = ('%s_%d' % (a['channel'], epoch) if readers == 1
                else '%s-%d_%d' % (a['channel'], r, epoch))
        data = read_stream(os.path.join(a['dir'], name), limit, slow)
        keys = expected_keys(dump, seed, epoch, shard, (r, readers))
        want = [object_bytes(testdata, k, sizes[k], gz) for k in keys]
        if wrap == 'none':
            good = data == b''.join(want)
            print('%s: %d bytes, %s' % (name, len(data), 'equal to the objects in order' if good else 'WRONG'))
            ok &= good
            seen += keys
            continue
        recs, truncated = parse_recordio(data)
        if limit is not None:
            good = all(x == y for x, y in zip(recs, want))
            print('%s: %d bytes read, %d whole records, all right: %s' % (name, len(data), len(recs), good))
            ok &= good
            continue
        bad = [i for i, (x, y) in enumerate(zip(recs, want)) if x != y]
        good = not bad and not truncated and len(recs) == len(want)
        if 'expect_records' in a:
            good = (not bad and truncated == (a.get('truncated') == '1')
                    and len(recs) == int(a['expect_records']))
        print('%s: %d records of %d, truncated %s, wrong %s' % (name, len(recs), len(want), truncated, bad[:5]))
        ok &= good
        seen += keys[:len(recs)]
        if 'order_out' in a:
            open('%s.%d' % (a['order_out'], r), 'w').write('\n'.join(keys[:len(recs)]) + '\n')
    if 'expect_records' not in a and limit is None and 'only' not in a:
        every = sorted(sizes) if shard == (0, 1) else None
        if every is not None and sorted(seen) != every:
            print('the readers together do not hold every object once')
            ok = False
        if 'seen_out' in a:
            open(a['seen_out'], 'w').write('\n'.join(seen) + '\n')
    sys.exit(0 if ok else 1)

main()
PY
# pipecheck KEY=VALUE...: reads the FIFOs of one epoch and checks them.
pipecheck () {
  /usr/bin/python3 -I "$TMP/pipetest.py" testdata="$S3BD_TESTDATA" dump="$TMP/ds.dump" \
    dir="$TMP/pd" channel=train "$@"
}
mkdir "$TMP/pd"

# --- A ---
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M pipe=train \
  pipe-dir="$TMP/pd" record-wrapper=recordio shuffle-seed=1234 epochs=2 \
  stats-file="$TMP/stats"
nbdcopy --connections=2 "$uri" "$TMP/read.img" &
copy_pid=$!
check "A: epoch 0 holds every object once, in the documented order" \
  pipecheck seed=1234 epoch=0 order_out="$TMP/order0"
check "A: epoch 1 holds every object once, in the documented order" \
  pipecheck seed=1234 epoch=1 order_out="$TMP/order1"
check "A: nbdcopy of the device during the epochs succeeded" wait "$copy_pid"
check "A: the device read while the pipe streamed equals the image" \
  cmp "$TMP/expected.img" "$TMP/read.img"
check "A: the two epochs' orders differ" bash -c '! cmp -s "$1.0" "$2.0"' _ "$TMP/order0" "$TMP/order1"
check "A: the order is not index order" bash -c '! cmp -s "$1.0" <(sort "$1.0")' _ "$TMP/order0"
sleep 1.2
check "A: no FIFO is left after the last epoch" bash -c '[ -z "$(ls -A "$1")" ]' _ "$TMP/pd"
check "A: the stats file counts two epochs of 85 records" \
  grep -Eq "pipe reader 0: 2 epochs done, last epoch 1 complete: 85 records, [0-9]+ bytes" "$TMP/stats"
stop_nbdkit
check "A: each epoch's end was logged with its records and throughput" \
  bash -c '[ "$(grep -Ec "pipe .*/train_[01]: epoch [01] complete: 85 records, [0-9]+ bytes in [0-9.]+ s \([0-9.]+ MB/s\)" "$1")" -eq 2 ]' _ "$TMP/nbdkit.log"
grep "s3bd: stats" "$TMP/nbdkit.log" | tail -1 | cut -c1-400
rm -f "$TMP/read.img"

# --- B ---
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M pipe=train \
  pipe-dir="$TMP/pd" epochs=1
check "B: unseeded raw: the objects back to back in index order" pipecheck epoch=0 wrap=none
stop_nbdkit
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M pipe=train \
  pipe-dir="$TMP/pd" record-wrapper=recordio epochs=3 pipe-start=1
check "B: unseeded RecordIO resumed at pipe-start=1: index order" \
  pipecheck epoch=1 order_out="$TMP/orderB"
check "B: index order is the sorted key order (S3's listing)" \
  bash -c 'cmp "$1.0" <(sed "s|^[0-9]* |ds/|" "$2" | LC_ALL=C sort)' _ "$TMP/orderB" "$TMP/spec"
check "B: epoch 2 follows" pipecheck epoch=2
stop_nbdkit

# --- C ---
mkdir "$TMP/gz"
/usr/bin/python3 -I - "$S3BD_TESTDATA" "$TMP/gz" <<'PY'
import gzip, subprocess, sys
testdata, out = sys.argv[1:]
specs = [('gz/a', 100), ('gz/big', 3_500_000), ('gz/empty', 0), ('gz/multi', 200_000), ('gz/z', 70_000)]
for key, size in specs:
    data = subprocess.run([testdata, 'gen', key, str(size)], check=True, capture_output=True).stdout
    open('%s/%s' % (out, key.replace('/', '_')), 'wb').write(data)
    if key == 'gz/multi':
        body = gzip.compress(data[:50_000]) + gzip.compress(data[50_000:])
    else:
        body = gzip.compress(data, mtime=0)
    open('%s/%s.gz' % (out, key.replace('/', '_')), 'wb').write(body)
PY
for k in a big empty multi z; do
  s3 put "s3://pipe/$(printf gz/%s "$k")" "$TMP/gz/gz_$k.gz" >/dev/null
done
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://pipe/gz/ -o "$TMP/gz.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/gz.s3bd" > "$TMP/gz.dump"
start_nbdkit "$TMP/nbd.sock" "$TMP/gz.s3bd" pipe=gz pipe-dir="$TMP/pd" \
  compression=gzip record-wrapper=recordio epochs=1 shuffle-seed=9
check "C: gzip objects as RecordIO records of their inflated bytes" \
  pipecheck dump="$TMP/gz.dump" channel=gz gz="$TMP/gz" seed=9 epoch=0
stop_nbdkit
start_nbdkit "$TMP/nbd.sock" "$TMP/gz.s3bd" pipe=gz pipe-dir="$TMP/pd" \
  compression=gzip epochs=1
check "C: gzip objects raw: inflated, back to back" \
  pipecheck dump="$TMP/gz.dump" channel=gz gz="$TMP/gz" epoch=0 wrap=none
stop_nbdkit

# --- D ---
for i in 0 1; do
  start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M pipe=train \
    pipe-dir="$TMP/pd" record-wrapper=recordio shuffle-seed=77 epochs=1 pipe-shard=$i/2
  check "D: pipe-shard=$i/2 is the documented part of the shuffled epoch" \
    pipecheck seed=77 epoch=0 shard=$i/2 seen_out="$TMP/shard$i"
  stop_nbdkit
done
check "D: the two shards are disjoint and together complete" \
  bash -c 'diff <(sort "$1" "$2") <(sed "s|^[0-9]* |ds/|" "$3" | LC_ALL=C sort)' _ \
  "$TMP/shard0" "$TMP/shard1" "$TMP/spec"
check "D: the shards are balanced by bytes (within the largest object)" \
  /usr/bin/python3 -I - "$TMP/shard0" "$TMP/shard1" "$TMP/spec" <<'PY'
import sys
sizes = {'ds/' + l.split(' ', 1)[1].strip(): int(l.split(' ', 1)[0]) for l in open(sys.argv[3])}
a, b = (sum(sizes[k.strip()] for k in open(f) if k.strip()) for f in sys.argv[1:3])
print('shard bytes', a, b)
sys.exit(0 if abs(a - b) <= max(sizes.values()) else 1)
PY
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M pipe=train \
  pipe-dir="$TMP/pd" record-wrapper=recordio shuffle-seed=5 epochs=2 pipe-readers=3
check "D: 3 readers, epoch 0: disjoint, complete, as documented" pipecheck seed=5 epoch=0 readers=3
check "D: 3 readers, epoch 1: disjoint, complete, as documented" pipecheck seed=5 epoch=1 readers=3
stop_nbdkit

# --- E ---
# rss_kb PID: resident set of nbdkit.
rss_kb () { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=32M pipe=train \
  pipe-dir="$TMP/pd" record-wrapper=recordio epochs=4 pipe-readers=2 \
  stats-file="$TMP/stats"
check "E: reader 0 reads 100000 bytes of epoch 0 and closes: the records so far are right" \
  pipecheck epoch=0 readers=2 only=0 limit=100000
check "E: after the early close, epoch 1 of reader 0 is whole and right" \
  pipecheck epoch=1 readers=2 only=0
check "E: the early close was counted as the reader's" grep -q "epoch 0 closed by the reader" "$TMP/nbdkit.log"
check "E: reader 1's FIFO waits, never opened" test -p "$TMP/pd/train-1_0"
rss0=$(rss_kb "$NBDKIT_PID")
pipecheck epoch=2 readers=2 only=0 limit=6000000 slow=0.02 > "$TMP/slow.out" &
slow_pid=$!
max=0
while kill -0 "$slow_pid" 2>/dev/null; do
  r=$(rss_kb "$NBDKIT_PID"); [ "$r" -gt "$max" ] && max=$r
  sleep 0.1
done
check "E: the slow reader's records are right" wait "$slow_pid"
cat "$TMP/slow.out"
echo "E: nbdkit RSS before the slow epoch ${rss0} KiB, at most ${max} KiB during it"
check "E: during the slow epoch RSS grew by less than the cache (32 MiB) + 16 MiB" \
  test $((max - rss0)) -lt $(( (32 + 16) * 1024 ))
# A reader that takes 64 KiB and stalls: the writer waits on the full
# FIFO; what it has written is the 64 KiB read plus at most the FIFO's
# buffer (1 MiB) and a record header.
/usr/bin/python3 -I - "$TMP/pd/train-0_3" <<'PY' &
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
f = open(sys.argv[1], 'rb', buffering=0)
got = 0
while got < 65536:
    got += len(f.read(65536 - got))
time.sleep(3)
PY
stall_pid=$!
sleep 2.5
stalled=$(grep -Eo "pipe reader 0: 3 epochs done, epoch 3 at [0-9]+ records, [0-9]+ bytes" "$TMP/stats" | awk '{ print $(NF - 1) }')
echo "E: a stalled reader's writer has written ${stalled:-?} bytes"
check "E: a stalled reader holds the writer: at most 64 KiB + 1 MiB + 8 written" \
  test "${stalled:-99999999}" -le $((65536 + 1048576 + 8))
wait "$stall_pid"
stop_nbdkit
check "E: nbdkit stopped cleanly with a FIFO never opened (the exit stats were written)" \
  grep -q "nbdkit: s3bd: stats: .*pipe reader 1: 0 epochs done" "$TMP/nbdkit.log"
check "E: the FIFO nobody opened was removed at exit" test ! -e "$TMP/pd/train-1_0"

# --- F ---
s3 mb s3://pchg
printf '100000 a\n100000 b\n100000 c\n100000 d\n' > "$TMP/spec2"
upload s3://pchg/ds/ "$TMP/spec2"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://pchg/ds/ -o "$TMP/chg.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/chg.s3bd" > "$TMP/chg.dump"
head -c 100000 /dev/zero > "$TMP/zeros"
s3 put s3://pchg/ds/c "$TMP/zeros" >/dev/null
start_nbdkit "$TMP/nbd.sock" "$TMP/chg.s3bd" check=false pipe=train \
  pipe-dir="$TMP/pd" record-wrapper=recordio epochs=2
check "F: epoch 0 ends before the changed object: a and b whole and right, nothing of c" \
  pipecheck dump="$TMP/chg.dump" epoch=0 expect_records=2 truncated=0
check "F: epoch 1 goes on and ends at the same place" \
  pipecheck dump="$TMP/chg.dump" epoch=1 expect_records=2 truncated=0
stop_nbdkit
check "F: the key was logged with the FIFO closed early" \
  grep -Eq "error: pipe .*train_0: s3://pchg/ds/c: .*; the FIFO is closed early" "$TMP/nbdkit.log"
check "F: the epoch's end says it was an error" grep -q "epoch 1 closed early on an error: 2 records" "$TMP/nbdkit.log"
grep "FIFO is closed early" "$TMP/nbdkit.log" | head -1

# --- H ---
start_nbdkit "$TMP/nbd.sock" "$TMP/ds.s3bd" cache-size=64M hydrate="$TMP/copy" \
  pipe=train pipe-dir="$TMP/pd" record-wrapper=recordio shuffle-seed=3 epochs=2 \
  stats-file="$TMP/stats"
check "H: with hydrate=, epoch 0 is right" pipecheck seed=3 epoch=0
for _ in $(seq 600); do grep -q complete "$TMP/stats" && break; sleep 0.1; done
check "H: the copy is complete" grep -q "complete" "$TMP/stats"
check "H: epoch 1 from the complete copy is right" pipecheck seed=3 epoch=1
stop_nbdkit
check "H: the copy equals the image" cmp "$TMP/expected.img" "$TMP/copy"

# --- G ---
# refused KEY=VALUE...: nbdkit must not start.
refused () {
  timeout -k 5 30 env $(plugin_env) nbdkit -f --log=stderr -U - "$S3BD_PLUGIN_SO" "$TMP/ds.s3bd" \
    endpoint="$S3BD_TEST_ENDPOINT" path-style=true "$@" --run true
}
expect_error "G: pipe-shard=2/2" "pipe-shard=2/2: expected I/N with 0 <= I < N" refused pipe=t pipe-dir="$TMP/pd" pipe-shard=2/2
expect_error "G: pipe-shard=1/-2" "pipe-shard=1/-2: expected I/N" refused pipe=t pipe-dir="$TMP/pd" pipe-shard=1/-2
expect_error "G: record-wrapper=tfrecord" "record-wrapper=tfrecord: expected none or recordio" refused pipe=t pipe-dir="$TMP/pd" record-wrapper=tfrecord
expect_error "G: compression=zstd" "compression=zstd: expected none or gzip" refused pipe=t pipe-dir="$TMP/pd" compression=zstd
expect_error "G: epochs=0" "epochs=0: " refused pipe=t pipe-dir="$TMP/pd" epochs=0
expect_error "G: pipe-start=2 epochs=2" "pipe-start=2 must be below epochs=2" refused pipe=t pipe-dir="$TMP/pd" epochs=2 pipe-start=2
expect_error "G: shuffle-seed=-1" "shuffle-seed=-1: " refused pipe=t pipe-dir="$TMP/pd" shuffle-seed=-1
expect_error "G: pipe-readers=0" "pipe-readers=0: " refused pipe=t pipe-dir="$TMP/pd" pipe-readers=0
expect_error "G: a channel with a slash" "pipe=a/b: a channel name is 1 to 200 bytes, no '/'" refused pipe=a/b
expect_error "G: pipe-dir= without pipe=" "pipe-dir= needs pipe=CHANNEL" refused pipe-dir="$TMP/pd"
expect_error "G: a pipe-dir that does not exist" "pipe-dir=$TMP/nowhere: No such file or directory" refused pipe=t pipe-dir="$TMP/nowhere"
finish
