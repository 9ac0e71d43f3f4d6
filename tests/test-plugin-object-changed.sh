#!/bin/bash
# Proves that an object overwritten after indexing is never served: reads
# of it fail with EIO and one log line names the key and range (the GET
# carried If-Match with the indexed ETag and got 412), while other files
# still read fine.  Also that a missing object fails the same way, and,
# from the plugin's own counters, that neither a 412 nor a 404 is retried:
# each failed read costs exactly one GET.
. "$(dirname "$0")/lib.sh"
need_plugin
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
start_server
s3 mb s3://chg
printf '100000 keep.bin\n100000 change.bin\n100000 vanish.bin\n' > "$TMP/spec"
upload s3://chg/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://chg/ds/ -o "$TMP/chg.s3bd"
make_expected "$TMP/chg.s3bd" "$TMP/expected.img"

# Same size, other bytes: only the ETag tells.
head -c 100000 /dev/zero > "$TMP/zeros"
s3 put s3://chg/ds/change.bin "$TMP/zeros" >/dev/null
/usr/bin/python3 -I - "$S3BD_TEST_ENDPOINT" <<'PY'
import os, sys, botocore.session
from botocore.config import Config
s3 = botocore.session.get_session().create_client(
    's3', endpoint_url=sys.argv[1], region_name='us-east-1',
    config=Config(signature_version='s3v4', proxies={}, s3={'addressing_style': 'path'}))
s3.delete_object(Bucket='chg', Key='ds/vanish.bin')
PY

# At start-up the check (one GET of the index's first object, change.bin)
# finds it changed and stops nbdkit before it serves anything.
# (timeout: see fails_to_start in test-plugin-source-and-export-name.sh)
out=$(timeout -k 5 30 env $(plugin_env) nbdkit -f --log=stderr -U - "$S3BD_PLUGIN_SO" "$TMP/chg.s3bd" \
        endpoint="$S3BD_TEST_ENDPOINT" path-style=true --run 'echo started' 2>&1) || true
check "the start-up check refuses an index whose object changed" \
  bash -c '! grep -q started <<<"$1" && grep -q "error: check (check=false skips it): GET s3://chg/ds/change.bin bytes 0-0: .*changed" <<<"$1"' _ "$out"
echo "$out" | grep error: || true
# check=false: the rest is about objects that change while the device is
# served.
start_nbdkit "$TMP/nbd.sock" "$TMP/chg.s3bd" cache-size=64M readahead-max=0 \
  stats-file="$TMP/stats" check=false
uri="nbd+unix:///?socket=$TMP/nbd.sock"
read_file () {  # PATH: read the file's first block through NBD; prints OK or the error
  local first
  first=$(awk -F'\t' -v p="$1" '$1 == p { print $5 }' "$TMP/expected.img.dump")
  /usr/bin/python3 -I - "$uri" "$((first * 4096))" "$TMP/expected.img" <<'PY'
import errno, sys, nbd
uri, off, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_uri(uri)
try:
    data = h.pread(65536, off)
except nbd.Error as e:
    # The binding gives the errno as a name or a number, by version.
    print("ERROR %s" % (e.errno if isinstance(e.errno, str)
                        else errno.errorcode.get(e.errno, e.errno)))
    sys.exit(0)
with open(expected, 'rb') as f:
    f.seek(off)
    print('OK' if f.read(65536) == data else 'WRONG BYTES')
PY
}
check "an unchanged file reads fine" test "$(read_file keep.bin)" = OK
check "the changed file fails with EIO, never wrong bytes" test "$(read_file change.bin)" = "ERROR EIO"
check "a second read fails the same way (nothing bad was cached)" test "$(read_file change.bin)" = "ERROR EIO"
check "a deleted object fails with EIO" test "$(read_file vanish.bin)" = "ERROR EIO"
check "the unchanged file still reads fine afterwards" test "$(read_file keep.bin)" = OK
check "the log names the changed key and says why" \
  grep -q "GET s3://chg/ds/change.bin bytes .*object changed since it was indexed" "$TMP/nbdkit.log"
check "the log names the vanished key" grep -q "GET s3://chg/ds/vanish.bin bytes .*no such key" "$TMP/nbdkit.log"
stop_nbdkit

# At exit, after the fetcher has stopped, the plugin writes its final
# counters: "stats: GETs N (retries R, failed F), ...".  Each object is
# smaller than a chunk, so each read that misses is one GET: keep.bin
# once (its second read is a hit), change.bin twice (nothing was cached),
# vanish.bin once.
stats=$(cat "$TMP/stats" 2>/dev/null || true)
echo "$stats"
gets () { sed -n 's/^stats: GETs \([0-9]*\) (retries \([0-9]*\), failed \([0-9]*\)).*/\1 \2 \3/p' <<<"$stats"; }
check "the plugin wrote its final stats" test -n "$(gets)"
read -r n_gets n_retries n_failed _ <<<"$(gets) x x x"
check "neither the 412 nor the 404 was retried (retries $n_retries)" test "$n_retries" = 0
check "one GET per read that missed: 4 (got $n_gets)" test "$n_gets" = 4
check "the three GETs of the changed and deleted objects failed (got $n_failed)" test "$n_failed" = 3
finish
