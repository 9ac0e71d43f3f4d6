#!/bin/bash
# Proves source= and export-name=:
#  - source=s3://B/P/ serves, byte for byte over the whole device, the
#    device index= serves for the index s3bd-mkimage builds from the same
#    prefix, with the defaults and with every build key (uid, gid,
#    file-mode, dir-mode, label, shard) and SOURCE_DATE_EPOCH;
#  - every file read through the image's ext4 metadata (debugfs) is its
#    S3 object, fetched separately;
#  - start-up logs one summary line, and a bad source (missing bucket,
#    empty prefix, wrong credentials, not an S3 URI), both or neither of
#    index= and source=, or a bad key make nbdkit fail to start with one
#    specific error line;
#  - export-name=NAME: the listing shows NAME, NAME and the default
#    export work, any other name is refused (the client sees "no export
#    named", the log says why); unset, any name is served.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v nbdcopy >/dev/null || skip "nbdcopy is needed (libnbd-bin)"
command -v debugfs >/dev/null || skip "debugfs is needed (e2fsprogs)"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is needed"
start_server
s3 mb s3://dev
{
  echo "0 a/empty"
  echo "1 a/one"
  echo "4095 a/b4095"
  echo "4096 a/b4096"
  echo "4097 a/b4097"
  echo "3000017 big/three-mb.bin"
  echo "0 markers/emptydir/"
  echo "5 bad//segment"
  for i in $(seq -w 0 19); do echo "$(( (10#$i * 7919) % 30000 )) small/f$i"; done
} > "$TMP/spec"
upload s3://dev/ds/ "$TMP/spec"
mk () { "$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$@"; }
uri="nbd+unix:///?socket=$TMP/nbd.sock"

# copy_device NAME [NBDKIT ARGS]: the whole device served with those
# arguments, in $TMP/NAME.img; keeps the log in $TMP/NAME.log.
copy_device () {
  local name=$1
  shift
  start_nbdkit "$TMP/nbd.sock" "$@" cache-size=64M
  nbdcopy "$uri" "$TMP/$name.img"
  stop_nbdkit
  cp "$TMP/nbdkit.log" "$TMP/$name.log"
}

# ---- source= with the defaults against index= ----
mk s3://dev/ds/ -o "$TMP/dev.s3bd"
copy_device index "$TMP/dev.s3bd"
copy_device source source=s3://dev/ds/
check "source= device is byte-identical to the index= device" \
  cmp "$TMP/index.img" "$TMP/source.img"
make_expected "$TMP/dev.s3bd" "$TMP/expected.img"
check "source= device holds every object's bytes at the indexed blocks" \
  cmp "$TMP/expected.img" "$TMP/source.img"
check "the source= device passes e2fsck -fn" e2fsck -fn "$TMP/source.img"
check "start-up logs one summary line: objects, bytes, left out, time" \
  test "$(grep -cE '^nbdkit: s3bd: source s3://dev/ds/: 26 objects, 3286916 bytes, 1 left out, [0-9]+ directories; device [0-9]+ MiB, index [0-9]+ bytes; built in [0-9.]+ s$' "$TMP/source.log")" -eq 1
grep "s3bd: source s3://" "$TMP/source.log" || true
check "left-out keys are logged with -D s3bd.verbose=1" \
  grep -q "left out s3://dev/ds/bad//segment: empty path segment" "$TMP/source.log"

# Files, read through the image's own metadata, are their S3 objects.
files_are_objects () {
  local path obj n=0
  while IFS=$'\t' read -r path obj _; do
    s3 get "$obj" > "$TMP/obj"
    debugfs -R "cat /$path" "$TMP/source.img" 2>/dev/null > "$TMP/file"
    cmp "$TMP/obj" "$TMP/file" || { echo "differs: /$path ($obj)" >&2; return 1; }
    n=$((n + 1))
  done < <("$S3BD_MKIMAGE" --dump "$TMP/dev.s3bd")
  echo "$n files checked"
  [ "$n" -eq 26 ]
}
check "every file of the source= device reads back as its S3 object" files_are_objects
check "directory markers are directories" \
  bash -c 'debugfs -R "stat /markers/emptydir" "$1" 2>/dev/null | grep -q "Type: directory"' _ "$TMP/source.img"

# ---- Every build key, and SOURCE_DATE_EPOCH ----
opts=(--uid 1000 --gid 7 --file-mode 0640 --dir-mode 0750 --label trainset --shard 1/2)
keys=(uid=1000 gid=7 file-mode=0640 dir-mode=0750 label=trainset shard=1/2)
export SOURCE_DATE_EPOCH=1234567890
mk "${opts[@]}" s3://dev/ds/ -o "$TMP/opts.s3bd"
copy_device opts source=s3://dev/ds/ "${keys[@]}"
unset SOURCE_DATE_EPOCH
make_expected "$TMP/opts.s3bd" "$TMP/opts-expected.img"
check "source= with uid, gid, modes, label, shard and SOURCE_DATE_EPOCH equals s3bd-mkimage's image" \
  cmp "$TMP/opts-expected.img" "$TMP/opts.img"
check "  ... and the options took effect (owner, mode, label, shard)" \
  bash -c 'debugfs -R "stat /a/b4096" "$1" 2>/dev/null | grep -q "Mode:  0640" &&
           debugfs -R "stat /a/b4096" "$1" 2>/dev/null | grep -q "User:  1000   Group:     7" &&
           dumpe2fs -h "$1" 2>/dev/null | grep -q "volume name:   trainset" &&
           test "$(grep -c "^nbdkit: s3bd: source s3://dev/ds/: 13 objects" "$2")" -eq 1' \
  _ "$TMP/opts.img" "$TMP/opts.log"

# ---- export-name ----
start_nbdkit "$TMP/nbd.sock" source=s3://dev/ds/ export-name=train
nbdinfo --list "$uri" > "$TMP/list"
check "nbdinfo --list shows the export name" grep -q '^export="train":' "$TMP/list"
check "nbdinfo --list describes it with the source" \
  grep -q "description: s3://dev/ds/" "$TMP/list"
size=$(stat -c %s "$TMP/index.img")
check "the named export serves the device" \
  test "$(nbdinfo --size "nbd+unix:///train?socket=$TMP/nbd.sock")" -eq "$size"
check "the default export is the named one" \
  test "$(nbdinfo --size "$uri")" -eq "$size"
expect_error "another export name is refused" "no export named 'wrong'" \
  nbdinfo --size "nbd+unix:///wrong?socket=$TMP/nbd.sock"
check "the refusal is logged with both names" \
  grep -q "error: export 'wrong' not found: this server serves 'train' only" "$TMP/nbdkit.log"
refused_in_python () {
  /usr/bin/python3 -I - "nbd+unix:///other?socket=$TMP/nbd.sock" <<'PY'
import sys, nbd
h = nbd.NBD()
try:
    h.connect_uri(sys.argv[1])
except nbd.Error as e:
    print("refused:", e)
    sys.exit(0)
print("connected to a name the server does not serve")
sys.exit(1)
PY
}
check "libnbd (python) is refused another name too" refused_in_python
check "a refused client does not stop the export" \
  test "$(nbdinfo --size "nbd+unix:///train?socket=$TMP/nbd.sock")" -eq "$size"
stop_nbdkit

start_nbdkit "$TMP/nbd.sock" "$TMP/dev.s3bd"
check "without export-name, any name is served" \
  test "$(nbdinfo --size "nbd+unix:///anything?socket=$TMP/nbd.sock")" -eq "$size"
check "without export-name, the listing is the default export" \
  grep -q '^export="":' <(nbdinfo --list "$uri")
stop_nbdkit

# ---- Start-up errors: nbdkit fails, with one specific error line ----
# fails_to_start WHAT PATTERN [PARAM=VALUE...]
fails_to_start () {
  local what=$1 pattern=$2 out rc=0
  shift 2
  # timeout: under the preloaded ASan runtime, p11-kit's exit-time
  # destructor can deadlock in glibc's locale lock after nbdkit has said
  # why it stops (see stop_nbdkit in lib.sh); the message is out by then.
  out=$(timeout -k 5 30 env $(plugin_env) nbdkit -f --log=stderr -U - "$S3BD_PLUGIN_SO" \
          endpoint="$S3BD_TEST_ENDPOINT" path-style=true "$@" \
          --run 'echo started' 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] || grep -q started <<<"$out"; then
    echo "FAIL: $what: nbdkit started" >&2
    t_failed=$((t_failed + 1))
  elif [ "$(grep -c "error:" <<<"$out")" -ne 1 ] || ! grep -Eq -- "error: $pattern" <<<"$out"; then
    echo "FAIL: $what: expected one error matching '$pattern', got: $out" >&2
    t_failed=$((t_failed + 1))
  else
    echo "ok: $what: $out"
    t_passed=$((t_passed + 1))
  fi
}
fails_to_start "missing bucket" "source: LIST s3://no-such-bucket/ds/: no such bucket$" \
  source=s3://no-such-bucket/ds/
fails_to_start "empty prefix" "source: s3://dev/nothing/: no objects to serve$" \
  source=s3://dev/nothing/
fails_to_start "every key left out" \
  "source: s3://dev/ds/bad/: no objects to serve \(every key was left out\)$" \
  source=s3://dev/ds/bad/
AWS_SECRET_ACCESS_KEY=wrong fails_to_start "wrong credentials" \
  "source: LIST s3://dev/ds/: authentication failed" source=s3://dev/ds/
fails_to_start "not an S3 URI" "source=dev/ds/: not an S3 URI" source=dev/ds/
fails_to_start "no bucket in the URI" "source=s3:///ds/: no bucket name" source=s3:///ds/
fails_to_start "both index= and source=" "index= and source= exclude each other" \
  index="$TMP/dev.s3bd" source=s3://dev/ds/
fails_to_start "neither index= nor source=" "give index=.* or source=s3://BUCKET/PREFIX/"
fails_to_start "a build key with index=" "uid= applies to source= only" \
  index="$TMP/dev.s3bd" uid=5
fails_to_start "bad shard" "shard=2/2: expected I/N with 0 <= I < N" \
  source=s3://dev/ds/ shard=2/2
fails_to_start "bad mode" "file-mode=0999: expected octal" source=s3://dev/ds/ file-mode=0999
fails_to_start "label too long" "label=.*: at most 16 bytes" \
  source=s3://dev/ds/ label=seventeen-bytes-x
fails_to_start "bad uid" "uid=me: expected a decimal number" source=s3://dev/ds/ uid=me
fails_to_start "bad gid" "gid=4294967296: expected a decimal number" \
  source=s3://dev/ds/ gid=4294967296
fails_to_start "empty export-name" "export-name: must be 1 to 4096 bytes" \
  source=s3://dev/ds/ export-name=
# Before serving, one signed GET of an object of the index: a bad secret
# or endpoint stops nbdkit with the S3 error, not the first read.
AWS_SECRET_ACCESS_KEY=wrong fails_to_start "index= with a wrong secret" \
  "check \\(check=false skips it\\): GET s3://dev/ds/.*authentication failed" \
  index="$TMP/dev.s3bd"
fails_to_start "index= with an endpoint where nothing listens" \
  "check \\(check=false skips it\\): GET s3://dev/ds/" \
  index="$TMP/dev.s3bd" endpoint=http://127.0.0.1:9 retries=1
starts () {
  local what=$1 out
  shift
  out=$(timeout -k 5 30 env $(plugin_env) nbdkit -f --log=stderr -U - "$S3BD_PLUGIN_SO" \
          endpoint="$S3BD_TEST_ENDPOINT" path-style=true "$@" \
          --run 'echo started' 2>&1) || true
  if grep -q started <<<"$out"; then
    echo "ok: $what"
    t_passed=$((t_passed + 1))
  else
    echo "FAIL: $what: $out" >&2
    t_failed=$((t_failed + 1))
  fi
}
AWS_SECRET_ACCESS_KEY=wrong starts "check=false starts with a wrong secret" \
  index="$TMP/dev.s3bd" check=false
starts "the check passes with the right credentials" index="$TMP/dev.s3bd"
fails_to_start "a bad check=" "check=maybe: expected true or false" \
  index="$TMP/dev.s3bd" check=maybe
# Counts are whole numbers: no suffix ("1k" used to mean 1024).
fails_to_start "a count with a suffix" \
  "retries=1k: expected a whole number from 1 to 100, got '1k'" \
  index="$TMP/dev.s3bd" retries=1k
fails_to_start "max-requests out of range" \
  "max-requests=0: expected a whole number from 1 to 1024" \
  index="$TMP/dev.s3bd" max-requests=0
fails_to_start "timeout is seconds, no unit" \
  "timeout=60s: expected a whole number from 1 to 86400" \
  index="$TMP/dev.s3bd" timeout=60s
fails_to_start "a bad boolean" "path-style=maybe: expected true or false" \
  index="$TMP/dev.s3bd" path-style=maybe
fails_to_start "index= given twice" "index= given twice" \
  index="$TMP/dev.s3bd" index="$TMP/other.s3bd"
fails_to_start "cache too small for the requests in flight" \
  "cache-size \\(16777216\\) is too small: it must hold max\\(8, max-requests = 128\\) chunks" \
  index="$TMP/dev.s3bd" cache-size=16M max-requests=128
finish
