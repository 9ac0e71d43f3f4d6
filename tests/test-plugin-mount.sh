#!/bin/bash
# Proves the kernel path: s3bd-attach serves an index with nbdkit,
# attaches it (nbdfuse + a read-only direct-I/O loop device where the
# kernel has no nbd driver) and mounts it; e2fsck -fn finds the device
# clean; every file reads back as its object, and so do 8 processes
# reading different files at once; s3bd-detach undoes everything.
. "$(dirname "$0")/lib.sh"
need_plugin
[ "$(id -u)" -eq 0 ] || skip "root is needed to attach and mount"
command -v nbdfuse >/dev/null || skip "nbdfuse is needed"
[ -e /dev/fuse ] || skip "/dev/fuse is needed"
start_server
s3 mb s3://mnt
{
  for d in $(seq -w 0 7); do
    for i in $(seq -w 0 49); do echo "$(( (10#$d * 50 + 10#$i) * 1009 % 200000 + 1 )) class$d/img$i.jpg"; done
  done
  echo "33554432 shards/shard-0.rec"
  echo "0 empty"
} > "$TMP/spec"
upload s3://mnt/train/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://mnt/train/ -o "$TMP/train.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/train.s3bd" > "$TMP/dump"

mkdir "$TMP/mnt"
export S3BD_RUN_DIR=$TMP/run S3BD_PLUGIN=$S3BD_PLUGIN_SO
nbdkit_env=()
for e in $(plugin_env); do nbdkit_env+=(--nbdkit-env "$e"); done
detach () { "$S3BD_SOURCE_DIR/scripts/s3bd-detach" "$TMP/mnt" >/dev/null 2>&1 || true; }
trap 'detach; cleanup' EXIT
if ! "$S3BD_SOURCE_DIR/scripts/s3bd-attach" --via fuse "${nbdkit_env[@]}" "$TMP/train.s3bd" "$TMP/mnt" \
     endpoint="$S3BD_TEST_ENDPOINT" path-style=true cache-size=64M 2> "$TMP/attach.err"; then
  cat "$TMP/attach.err" >&2
  if grep -q "losetup failed\|nbdfuse did not start\|mount.*failed" "$TMP/attach.err"; then
    skip "cannot attach a FUSE-backed loop device here"
  fi
  echo "FAIL: s3bd-attach" >&2
  exit 1
fi
cat "$TMP/attach.err"
check "mounted read-only" bash -c 'findmnt -no OPTIONS "$1" | grep -qw ro' _ "$TMP/mnt"
dev=$(findmnt -no SOURCE "$TMP/mnt")
check "e2fsck -fn on the attached device is clean" e2fsck -fn "$dev"
check "every file reads back as its object" "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/dump"
# Drop the page cache so that the parallel readers go to the device.
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
split -n l/8 "$TMP/dump" "$TMP/part."
pids=()
for p in "$TMP"/part.*; do "$S3BD_TESTDATA" verify "$TMP/mnt" < "$p" > "$p.out" 2>&1 & pids+=($!); done
wait "${pids[@]}"
check "8 processes reading different files at once all get the right bytes" \
  test "$(cat "$TMP"/part.*.out | grep -c 'verified')" -eq 8
check "writing is refused" bash -c '! touch "$1/new" 2>/dev/null' _ "$TMP/mnt"
pids="$(cat "$TMP"/run/*/nbdkit.pid "$TMP"/run/*/nbdfuse.pid)"
"$S3BD_SOURCE_DIR/scripts/s3bd-detach" "$TMP/mnt"
gone () { for p in $pids; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "s3bd-detach unmounts and stops everything" \
  bash -c '! mountpoint -q "$1" && [ -z "$(find "$2" -mindepth 1 -type d)" ]' _ "$TMP/mnt" "$TMP/run"
check "nbdkit and nbdfuse have exited" gone
check "the stats line was logged at exit" grep -q "s3bd: stats" "$TMP/run/last-nbdkit.log"
finish
