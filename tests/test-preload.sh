#!/bin/bash
# Proves s3bd-preload: the whole image written onto a file or a block
# device that then passes e2fsck -fn and mounts as plain ext4 (loop, no
# s3bd, no nbdkit, no S3 server running), every file byte for byte.
#   A. To a new file: exit 0, sparse, equal to the image, e2fsck clean,
#      mounted read-only with the S3 server stopped, every file verified.
#   B. Interrupted (SIGINT, then kill -9) and resumed: each run goes on
#      from what the last one made durable; the result equals the image.
#   C. To a loop block device first filled with random bytes (a used
#      volume): e2fsck clean, mounts, every file verified.
#   D. Bad arguments change nothing on DEST: a device too small, a device
#      mounted, another image's state, a file that is not a copy, a wrong
#      secret before anything is written, an unwritable directory.
#   E. Run again on a complete copy: exit 0 at once, with S3 stopped.
. "$(dirname "$0")/lib.sh"
S3BD_PRELOAD=$S3BD_BUILD_DIR/mkimage/s3bd-preload
[ -x "$S3BD_PRELOAD" ] || skip "$S3BD_PRELOAD not built"
command -v e2fsck >/dev/null || skip "e2fsck is needed (e2fsprogs)"
root=false
[ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null && root=true
start_server
s3 mb s3://pre
{
  echo "0 a/empty"
  echo "4097 a/b4097"
  echo "60000000 big/b1.bin"
  for d in 0 1 2; do
    for i in $(seq -w 0 99); do echo "$(( (10#$i * 7919 + d) % 150000 + 1 )) class$d/img$i.jpg"; done
  done
} > "$TMP/spec"
upload s3://pre/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://pre/ds/ -o "$TMP/pre.s3bd"
make_expected "$TMP/pre.s3bd" "$TMP/expected.img"
size=$(stat -c %s "$TMP/expected.img")
preload () { "$S3BD_PRELOAD" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$@"; }

# mount_verify IMAGE|DEVICE WHAT: mounts it read-only (a loop for a file),
# checks every file against its object, unmounts.
mount_verify () {
  local dev=$1 what=$2 opts=ro
  [ -f "$dev" ] && opts=ro,loop
  mkdir -p "$TMP/mnt"
  if ! mount -t ext4 -o "$opts" "$dev" "$TMP/mnt"; then
    echo "FAIL: $what: mount -o $opts failed" >&2
    t_failed=$((t_failed + 1))
    return
  fi
  check "$what: every file of the mount reads back as its object" \
    "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/expected.img.dump"
  umount "$TMP/mnt"
}

# --- A ---
check "A: preload to a new file exits 0" preload -q "$TMP/pre.s3bd" "$TMP/copy"
check "A: the file equals the image" cmp "$TMP/expected.img" "$TMP/copy"
check "A: the file is sparse" \
  test "$(du -k "$TMP/copy" | cut -f1)" -lt "$((size / 1024))"
check "A: e2fsck -fn is clean" e2fsck -fn "$TMP/copy"
"$S3BD_SOURCE_DIR/scripts/s3-server" stop --keep "$S3BD_TEST_SERVER_DIR"
if $root; then
  mount_verify "$TMP/copy" "A: with S3 stopped, mount -o ro,loop"
else
  echo "note: not root: the mount checks are not run" >&2
fi

# --- E ---
check "E: run again on the complete copy, with S3 stopped: exit 0" \
  bash -c '"$@" 2>&1 | grep -q "complete already"' _ \
  "$S3BD_PRELOAD" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$TMP/pre.s3bd" "$TMP/copy"
env=$("$S3BD_SOURCE_DIR/scripts/s3-server" restart "$S3BD_TEST_SERVER_DIR") \
  || { echo "FAIL: the S3 server did not restart" >&2; exit 1; }
eval "$env"

# --- B ---
# present STATE: units the state file says are durable.
present () { python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); print(sum(bin(x).count("1") for x in b[72:-4]))' "$1"; }
slow=(--requests 2 --get-size 1M --max-rate 20M -q)
"$S3BD_PRELOAD" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "${slow[@]}" "$TMP/pre.s3bd" "$TMP/res" & pid=$!
sleep 1
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
check "B: SIGINT stops it with status 130" test "$rc" -eq 130
u1=$(present "$TMP/res.s3bd-state")
"$S3BD_PRELOAD" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "${slow[@]}" "$TMP/pre.s3bd" "$TMP/res" & pid=$!
sleep 1.5
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
u2=$(present "$TMP/res.s3bd-state")
echo "durable units: after SIGINT $u1, after kill -9 $u2"
check "B: each interrupted run kept its progress ($u1 > 0, $u2 >= $u1)" \
  bash -c '[ "$1" -gt 0 ] && [ "$2" -ge "$1" ]' _ "$u1" "$u2"
check "B: the resumed preload exits 0" preload -q "$TMP/pre.s3bd" "$TMP/res"
check "B: the resumed copy equals the image" cmp "$TMP/expected.img" "$TMP/res"
rm -f "$TMP/res" "$TMP/res.s3bd-state"

# --- C ---
if $root && truncate -s "$size" "$TMP/bd.img" \
   && loop=$(losetup -f --show "$TMP/bd.img" 2>/dev/null); then
  # A used volume: random bytes everywhere before the preload.
  head -c "$size" /dev/urandom | dd of="$loop" bs=1M iflag=fullblock oflag=direct status=none
  check "C: preload to a used loop block device exits 0" \
    preload -q --state "$TMP/bd.state" "$TMP/pre.s3bd" "$loop"
  check "C: e2fsck -fn on the device is clean" e2fsck -fn "$loop"
  mount_verify "$loop" "C: the block device, mount -o ro"
  # --- D, devices ---
  mount -t ext4 -o ro "$loop" "$TMP/mnt"
  expect_error "D: a mounted device is refused" "mounted or in use" \
    preload -q --state "$TMP/bd2.state" "$TMP/pre.s3bd" "$loop"
  umount "$TMP/mnt"
  check "D: ... and no state was written for it" test ! -e "$TMP/bd2.state"
  losetup -d "$loop"
  truncate -s 4M "$TMP/small.img"
  if loop=$(losetup -f --show "$TMP/small.img" 2>/dev/null); then
    expect_error "D: a device too small is refused" "the device holds 4194304 bytes" \
      preload -q --state "$TMP/small.state" "$TMP/pre.s3bd" "$loop"
    expect_error "D: a device needs --state" "hydrate-state=PATH|--state" \
      preload -q "$TMP/pre.s3bd" "$loop"
    losetup -d "$loop"
  fi
else
  echo "note: no loop device (not root, or none free): the block-device cases are not run" >&2
fi

# --- D, files ---
s3 mb s3://other
echo "5000 x/only" > "$TMP/spec2"
upload s3://other/ds/ "$TMP/spec2"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://other/ds/ -o "$TMP/other.s3bd"
sum=$(md5sum < "$TMP/copy")
expect_error "D: a copy of another image is refused" "made for another image" \
  preload -q "$TMP/other.s3bd" "$TMP/copy"
check "D: ... and the copy is unchanged" test "$(md5sum < "$TMP/copy")" = "$sum"
echo "precious" > "$TMP/notacopy"
expect_error "D: a file that is not a copy is refused" "not a copy s3bd made" \
  preload -q "$TMP/pre.s3bd" "$TMP/notacopy"
check "D: ... and left as it was" grep -qx precious "$TMP/notacopy"
expect_error "D: a wrong secret is refused" "SignatureDoesNotMatch|rejected|403" \
  env AWS_SECRET_ACCESS_KEY=wrong "$S3BD_PRELOAD" --endpoint "$S3BD_TEST_ENDPOINT" \
  --path-style -q "$TMP/pre.s3bd" "$TMP/new"
check "D: ... before anything was written" test ! -e "$TMP/new" -a ! -e "$TMP/new.s3bd-state"
mkdir "$TMP/ro"
if [ "$(id -u)" -eq 0 ]; then
  # root writes anywhere but on a read-only file system.
  mount -t tmpfs -o ro,size=1M tmpfs "$TMP/ro"
  expect_error "D: a DEST that cannot be created is refused" "Read-only file system" \
    preload -q --no-check "$TMP/pre.s3bd" "$TMP/ro/copy"
  umount "$TMP/ro"
else
  chmod 555 "$TMP/ro"
  expect_error "D: a DEST that cannot be created is refused" "Permission denied" \
    preload -q --no-check "$TMP/pre.s3bd" "$TMP/ro/copy"
fi
expect_error "D: a missing index is refused" "No such file" \
  preload -q "$TMP/nothere.s3bd" "$TMP/new"
finish
