#!/bin/bash
# Proves Pipe mode over an augmented manifest whose lines name objects in
# two buckets: s3bd-mkimage keeps each line's records (the attributes of
# --attribute-names, in that order) in a version 2 index; the plugin
# sends, for every line of the epoch's order (the documented permutation
# over lines), each "-ref" attribute's object bytes and each other
# attribute's JSON text as records of their own.  The reader, the order
# and the JSON texts are computed here from the manifest and the docs
# (docs/nbdkit-s3bd-plugin.md, "Pipe mode"), not from the exporter.
#   A. RecordIO, shuffle-seed, epochs=2, while nbdcopy reads the device:
#      every record right, each line once per epoch, orders differ.
#   B. No wrapper, no seed: the stream is the records back to back in
#      manifest order.
#   C. pipe-shard=0/2 and 1/2: whole lines, disjoint, together complete.
#   D. The index is version 2; a prefix index stays version 1;
#      s3bd-mkimage --dump-records lists the records the manifest gives.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
start_server
s3 mb s3://imgs
s3 mb s3://masks
for i in $(seq 0 23); do echo "$(( (i * 7919) % 200000 + 1 )) train/img$i.jpg"; done > "$TMP/spec1"
for i in $(seq 0 23); do echo "$(( (i * 104729) % 50000 )) m/mask$i.png"; done > "$TMP/spec2"
upload s3://imgs/ "$TMP/spec1"
upload s3://masks/ "$TMP/spec2"
/usr/bin/python3 -I - "$TMP/aug.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], 'w', encoding='utf-8') as f:
    for i in range(24):
        line = {"source-ref": "s3://imgs/train/img%d.jpg" % i,
                "class": i % 3,
                "meta": {"w": i, "scale": 0.5, "tags": ["a/b", "caf\u00e9"]},
                "mask-ref": "s3://masks/m/mask%d.png" % i,
                "ignored": "not named"}
        f.write(json.dumps(line) + '\n')
    # An object named twice: one file, two records.
    f.write(json.dumps({"source-ref": "s3://imgs/train/img0.jpg", "class": None,
                        "meta": "dup", "mask-ref": "s3://masks/m/mask1.png"}) + '\n')
PY
attrs=source-ref,class,meta,mask-ref
check "s3bd-mkimage builds the index with Pipe records" \
  bash -c '"$1" --endpoint "$2" --path-style --augmented-manifest "$3" --attribute-names "$4" -o "$5" 2> "$6" &&
           grep -q "100 Pipe records" "$6"' _ \
  "$S3BD_MKIMAGE" "$S3BD_TEST_ENDPOINT" "$TMP/aug.jsonl" "$attrs" "$TMP/aug.s3bd" "$TMP/mkimage.err"
cat "$TMP/mkimage.err"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://imgs/train/ -o "$TMP/prefix.s3bd"
version () { od -An -tu4 -j8 -N4 "$1" | tr -d ' '; }
check "D: an index with records is version 2" test "$(version "$TMP/aug.s3bd")" = 2
check "D: a prefix index is version 1" test "$(version "$TMP/prefix.s3bd")" = 1
# The records as the manifest gives them, against --dump-records.
/usr/bin/python3 -I - "$TMP/aug.jsonl" "$attrs" "$TMP/spec1" "$TMP/spec2" > "$TMP/records.want" <<'PY'
import json, sys
sizes = {}
for bucket, spec in (('imgs', sys.argv[3]), ('masks', sys.argv[4])):
    for l in open(spec):
        n, key = l.split()
        sizes['s3://%s/%s' % (bucket, key)] = n
for i, l in enumerate(open(sys.argv[1], encoding='utf-8')):
    v = json.loads(l)
    for j, n in enumerate(sys.argv[2].split(',')):
        if n.endswith('-ref'):
            print('%d\t%d\tobject\t%s\t%s' % (i, j, v[n], sizes[v[n]]))
        else:
            print('%d\t%d\tinline\t%s' % (i, j, json.dumps(v[n], separators=(',', ':'), ensure_ascii=False)))
PY
"$S3BD_MKIMAGE" --dump-records "$TMP/aug.s3bd" > "$TMP/records.got"
check "D: --dump-records lists every line's records as the manifest gives them" \
  cmp "$TMP/records.want" "$TMP/records.got"
check "D: --dump-records of a prefix index says it has none" \
  bash -c '"$1" --dump-records "$2" 2>&1 >/dev/null | grep -q "no augmented-manifest records"' _ \
  "$S3BD_MKIMAGE" "$TMP/prefix.s3bd"
make_expected "$TMP/aug.s3bd" "$TMP/expected.img"
cat "$TMP/spec1" "$TMP/spec2" > "$TMP/sizes"

cp "$(dirname "$0")/pipeorder.py" "$TMP/"
cat > "$TMP/augcheck.py" <<'PY'
# The reader, the order and the records, from the manifest and the docs.
import json, os, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeorder import cut, open_fifo, parse_recordio, permutation

a = dict(x.split('=', 1) for x in sys.argv[1:])
attrs = a['attrs'].split(',')
sizes = {}
for l in open(a['sizes']):
    n, key = l.split()
    sizes[key] = int(n)
cache = {}
def obj(uri):
    key = uri.split('/', 3)[3]
    if key not in cache:
        cache[key] = subprocess.run([a['testdata'], 'gen', key, str(sizes[key])],
                                    check=True, capture_output=True).stdout
    return cache[key]

lines = []
for l in open(a['manifest'], encoding='utf-8'):
    v = json.loads(l)
    lines.append([obj(v[n]) if n.endswith('-ref')
                  else json.dumps(v[n], separators=(',', ':'), ensure_ascii=False).encode()
                  for n in attrs])
seed = int(a['seed']) if 'seed' in a else None
part, parts = map(int, a.get('shard', '0/1').split('/'))
epoch = int(a['epoch'])
order = cut(permutation(len(lines), seed, epoch), [sum(map(len, r)) for r in lines], part, parts)
want = [r for l in order for r in lines[l]]

path = os.path.join(a['dir'], '%s_%d' % (a['channel'], epoch))
with open_fifo(path) as f:
    data = f.read()
if a.get('wrap') == 'none':
    good = data == b''.join(want)
    print('%s: %d bytes, %s' % (path, len(data), 'the records back to back' if good else 'WRONG'))
else:
    recs, truncated = parse_recordio(data)
    bad = [i for i, (x, y) in enumerate(zip(recs, want)) if x != y]
    good = not bad and not truncated and len(recs) == len(want)
    print('%s: %d records of %d, truncated %s, wrong: %s' % (path, len(recs), len(want), truncated, bad[:5]))
if 'order_out' in a:
    open(a['order_out'], 'w').write(' '.join(map(str, order)) + '\n')
sys.exit(0 if good else 1)
PY
augcheck () {
  /usr/bin/python3 -I "$TMP/augcheck.py" testdata="$S3BD_TESTDATA" sizes="$TMP/sizes" \
    manifest="$TMP/aug.jsonl" attrs="$attrs" dir="$TMP/pd" channel=train "$@"
}
mkdir -p "$TMP/pd"
uri="nbd+unix:///?socket=$TMP/nbd.sock"

# A.
start_nbdkit "$TMP/nbd.sock" "$TMP/aug.s3bd" pipe=train pipe-dir="$TMP/pd" \
  record-wrapper=recordio shuffle-seed=42 epochs=2
nbdcopy "$uri" "$TMP/copy.img" &
copy_pid=$!
check "A: epoch 0: every record of every line, in the documented order" \
  augcheck seed=42 epoch=0 order_out="$TMP/order0"
check "A: epoch 1 likewise" augcheck seed=42 epoch=1 order_out="$TMP/order1"
check "A: the two epochs' line orders differ" bash -c '! cmp -s "$1" "$2"' _ "$TMP/order0" "$TMP/order1"
check "A: each line once per epoch" \
  bash -c 'for f; do tr " " "\n" < "$f" | sort -n | uniq | wc -l | grep -qx 25 || exit 1; done' _ "$TMP/order0" "$TMP/order1"
wait "$copy_pid"
check "A: the device read meanwhile is byte-exact" cmp "$TMP/expected.img" "$TMP/copy.img"
stop_nbdkit
check "A: the log gives the epochs' records" grep -q "epoch 1 complete: 100 records" "$TMP/nbdkit.log"

# B.
start_nbdkit "$TMP/nbd.sock" "$TMP/aug.s3bd" pipe=train pipe-dir="$TMP/pd" epochs=1
check "B: no wrapper, no seed: the records back to back in manifest order" augcheck wrap=none epoch=0
stop_nbdkit

# C.
for i in 0 1; do
  start_nbdkit "$TMP/nbd.sock" "$TMP/aug.s3bd" pipe=train pipe-dir="$TMP/pd" \
    record-wrapper=recordio shuffle-seed=7 epochs=1 pipe-shard=$i/2
  check "C: pipe-shard=$i/2 holds its whole lines, right" augcheck seed=7 epoch=0 shard=$i/2 order_out="$TMP/shard$i"
  stop_nbdkit
done
check "C: the shards are disjoint and together every line" \
  bash -c 'cat "$1" "$2" | tr " " "\n" | grep . | sort -n | uniq -u | wc -l | grep -qx 25' _ "$TMP/shard0" "$TMP/shard1"
finish
