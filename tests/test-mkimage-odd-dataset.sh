#!/bin/bash
# Proves that s3bd-mkimage turns an odd dataset into a correct ext4 image:
# empty, 1-byte and block-edge objects, a 300 MiB object needing several
# extents, unicode and 255-byte names, a 10,000-entry directory, deep
# nesting, directory markers, a file/prefix collision and keys that cannot
# be paths.  The materialised image passes e2fsck -fn; mounted read-only
# through a loop device, every file's size and mtime match the listing
# and every left-out key is absent; and after writing each object's bytes
# at the blocks the index records, every file reads back as its object,
# which proves the map.
. "$(dirname "$0")/lib.sh"
MKIMAGE=$S3BD_BUILD_DIR/mkimage/s3bd-mkimage
command -v e2fsck >/dev/null || skip "e2fsck is needed (e2fsprogs)"
start_server
s3 mb s3://odd

long=$(printf 'n%.0s' $(seq 1 251))       # 251 + ".bin" = 255 bytes
toolong=$(printf 'n%.0s' $(seq 1 252))    # 256 bytes
deep=$(printf 'level%02d/' $(seq 1 40))
{
  echo "0 sizes/empty"
  echo "1 sizes/one"
  echo "4095 sizes/b4095"
  echo "4096 sizes/b4096"
  echo "4097 sizes/b4097"
  echo "314572800 big/three-hundred-mib.bin"
  echo "100 unicode/café/日本語.txt"
  echo "50 unicode/emoji 😀 and space.bin"
  echo "255 long/$long.bin"
  echo "9 long/$toolong.bin"
  echo "77 ${deep}bottom.txt"
  echo "0 markers/emptydir/"
  echo "10 markers/withdata/"
  echo "0 markers/nested/dir/"
  echo "3 coll/x"
  echo "4 coll/x/y"
  echo "5 dots//double"
  echo "5 dots/./a"
  echo "5 dots/../b"
  echo "6 lost+found/reserved"
  for i in $(seq -w 0 9999); do echo "$((10#$i % 7)) wide/f$i"; done
} > "$TMP/spec"
upload s3://odd/ds/ "$TMP/spec"
s3 ls s3://odd/ds/ > "$TMP/listing"

"$MKIMAGE" --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://odd/ds/ \
  -o "$TMP/odd.s3bd" --report "$TMP/report" 2> "$TMP/summary"
cat "$TMP/summary"
check "mkimage succeeded and summarised" grep -q "objects,.*left out" "$TMP/summary"

# The left-out keys, each with its reason.
left () { grep -qF "$(printf 'odd\t%s\t%s' "$1" "$2")" "$TMP/report"; }
check "256-byte name left out" left "ds/long/$toolong.bin" "name longer than 255 bytes"
check "marker with data left out" left "ds/markers/withdata/" "directory marker with data"
check "file that is also a directory left out" left "ds/coll/x" "file is also a directory"
check "empty segment left out" left "ds/dots//double" "empty path segment"
check "'.' segment left out" left "ds/dots/./a" "'.' or '..' path segment"
check "'..' segment left out" left "ds/dots/../b" "'.' or '..' path segment"
check "lost+found left out" left "ds/lost+found/reserved" "reserved name"
check "exactly 7 keys left out" test "$(grep -vc '^#' "$TMP/report")" -eq 7

"$MKIMAGE" --materialize "$TMP/odd.s3bd" -o "$TMP/odd.img"
check "materialised image passes e2fsck -fn" e2fsck -fn "$TMP/odd.img"

# The index maps every file to its object: fill in the real bytes.
"$MKIMAGE" --dump "$TMP/odd.s3bd" > "$TMP/dump"
check "dump lists every kept object" test "$(wc -l < "$TMP/dump")" -eq $(( $(wc -l < "$TMP/spec") - 7 - 2 ))
check "object bytes written at the recorded blocks" \
  "$S3BD_TESTDATA" fill "$TMP/odd.img" < "$TMP/dump"
check "the filled image still passes e2fsck -fn" e2fsck -fn "$TMP/odd.img"

mkdir "$TMP/mnt"
if ! mount -o ro,loop "$TMP/odd.img" "$TMP/mnt" 2> "$TMP/mount.err"; then
  cat "$TMP/mount.err" >&2
  skip "cannot loop-mount here (root and loop devices are needed)"
fi
trap 'umount "$TMP/mnt" 2>/dev/null || true; cleanup' EXIT
check "every file reads back as its object, byte for byte" \
  "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/dump"
check "sha256 of the 300 MiB file equals its object's" \
  test "$(sha256sum < "$TMP/mnt/big/three-hundred-mib.bin")" = \
       "$("$S3BD_TESTDATA" gen ds/big/three-hundred-mib.bin 314572800 | sha256sum)"

# Sizes and mtimes against the listing, for every kept object.
meta_ok () {
  local bad=0 size etag mtime key path
  while IFS=$'\t' read -r size etag mtime key; do
    path=${key#ds/}
    grep -qxF "$key" "$TMP/leftkeys" && continue
    case $path in */) continue ;; esac
    if [ "$(stat -c '%s %Y' "$TMP/mnt/$path")" != "$size $mtime" ]; then
      echo "mismatch: $path" >&2
      bad=1
    fi
  done < "$TMP/listing"
  return $bad
}
grep -v '^#' "$TMP/report" | cut -f2 > "$TMP/leftkeys"
check "every file's size and mtime match the listing" meta_ok
check "the directory wins a file/directory collision" \
  test -d "$TMP/mnt/coll/x" -a -f "$TMP/mnt/coll/x/y"
check "left-out keys are absent" \
  bash -c '! test -e "$1/dots" && ! test -e "$1/markers/withdata" && ! test -e "$1/lost+found/reserved" && ! test -e "$1/long/$2.bin"' _ "$TMP/mnt" "$toolong"
check "empty directory markers are directories" \
  test -d "$TMP/mnt/markers/emptydir" -a -d "$TMP/mnt/markers/nested/dir"
check "the wide directory has 10,000 entries" test "$(ls "$TMP/mnt/wide" | wc -l)" -eq 10000
check "deep nesting reaches the bottom" test -f "$TMP/mnt/${deep}bottom.txt"
check "files are read-only, owned by root" \
  test "$(stat -c '%a %u %g' "$TMP/mnt/sizes/one")" = "444 0 0"
check "directories are 555" test "$(stat -c '%a' "$TMP/mnt/wide")" = 555
umount "$TMP/mnt"
finish
