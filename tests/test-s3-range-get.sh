#!/bin/bash
# Proves that ranged GETs return exactly the bytes asked for, checked
# against the pattern: whole objects split into parallel chunks, ranges at
# the first and last byte, across chunk boundaries and block sizes; and
# that a range past the end is an error, never short data.
. "$(dirname "$0")/lib.sh"
start_server
s3 mb s3://rng
cat > "$TMP/spec" <<'SPEC'
0 empty
1 one
4095 b4095
4096 b4096
4097 b4097
8388609 eight-mib-plus-one
67108864 sixty-four-mib
SPEC
upload s3://rng/ "$TMP/spec"

get_ok () {  # KEY OFFSET LENGTH [get options]
  local key=$1 off=$2 len=$3
  shift 3
  s3 get "$@" --range "$off:$len" "s3://rng/$key" > "$TMP/out" &&
    [ "$(stat -c %s "$TMP/out")" -eq "$len" ] &&
    "$S3BD_TESTDATA" check "$key" "$off" "$TMP/out" >/dev/null
}
whole_ok () {  # KEY SIZE [get options]
  local key=$1 size=$2
  shift 2
  s3 get "$@" "s3://rng/$key" > "$TMP/out" &&
    [ "$(stat -c %s "$TMP/out")" -eq "$size" ] &&
    "$S3BD_TESTDATA" check "$key" 0 "$TMP/out" >/dev/null
}

while read -r size key; do
  check "whole $key ($size bytes)" whole_ok "$key" "$size"
done < "$TMP/spec"
check "64 MiB object in 1 MiB parallel chunks" whole_ok sixty-four-mib 67108864 --chunk 1M
check "64 MiB object in odd 999,983-byte chunks" whole_ok sixty-four-mib 67108864 --chunk 999983
check "8 MiB+1 in 4 KiB chunks with 256 connections" whole_ok eight-mib-plus-one 8388609 --chunk 4K --connections 256
check "first byte" get_ok b4097 0 1
check "last byte" get_ok b4097 4096 1
check "block-straddling range" get_ok b4097 4095 2
check "unaligned range in the middle" get_ok sixty-four-mib 12345677 7654321
check "range across chunk boundaries" get_ok sixty-four-mib 1048575 3145730 --chunk 1M
check "tail of an object" get_ok eight-mib-plus-one 8388600 9

expect_error "range starting past the end" "range not satisfiable" \
  s3 get --range 5000:10 s3://rng/b4097
# Swift (as S3) answers the part there is, 4000-4096/4097: final, not a
# broken answer to retry.
expect_error "range running past the end gives no short data, and no retry" \
  "^s3bd-s3: GET s3://rng/b4097 bytes 4000-4199: range runs past the object's end: asked for bytes 4000-4199, got Content-Range bytes 4000-4096/4097$" \
  s3 get --range 4000:200 s3://rng/b4097
finish
