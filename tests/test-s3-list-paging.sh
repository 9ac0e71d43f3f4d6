#!/bin/bash
# Proves that listing a prefix of more than 1000 keys returns every key
# exactly once, sorted, with the right sizes and ETags: sequentially with
# continuation-token paging (default and small pages), and in parallel
# over common prefixes.
. "$(dirname "$0")/lib.sh"
start_server
s3 mb s3://list

# 2,560 keys: 25 directories of 100, a nested level, and loose top-level
# keys, so that pages cut through directories.
for d in $(seq -w 0 24); do
  for f in $(seq -w 0 99); do
    echo "$(( (10#$d * 100 + 10#$f) % 97 )) d$d/f$f.bin"
  done
done > "$TMP/spec"
for f in $(seq -w 0 49); do echo "7 d03/sub/g$f"; done >> "$TMP/spec"
for f in $(seq -w 0 9); do echo "1 top$f"; done >> "$TMP/spec"
upload s3://list/data/ "$TMP/spec"

awk '{ print $1 "\tdata/" $2 }' "$TMP/spec" | sort -t "$(printf '\t')" -k2 > "$TMP/want"
check "spec has more than 1000 keys" test "$(wc -l < "$TMP/want")" -gt 1000

listing () { s3 ls "$@" s3://list/data/ | cut -f1,4; }
listing > "$TMP/seq"
check "sequential listing (pages of 1000) is complete and sorted" cmp "$TMP/want" "$TMP/seq"
listing --max-keys 77 > "$TMP/seq77"
check "sequential listing in pages of 77 is complete and sorted" cmp "$TMP/want" "$TMP/seq77"
listing --parallel 8 > "$TMP/par"
check "parallel listing over common prefixes is complete and sorted" cmp "$TMP/want" "$TMP/par"
listing --parallel 8 --max-keys 30 > "$TMP/par30"
check "parallel listing with pages of 30 is complete and sorted" cmp "$TMP/want" "$TMP/par30"

s3 ls s3://list/data/d03/ | cut -f4 > "$TMP/d03"
check "a sub-prefix lists only its own 150 keys" test "$(grep -c '^data/d03/' "$TMP/d03")" -eq 150 -a "$(wc -l < "$TMP/d03")" -eq 150
s3 ls s3://list/nothing-here/ > "$TMP/empty"
check "an empty prefix lists nothing" test ! -s "$TMP/empty"

# ETags of single-PUT objects are the MD5 of their bytes: check a sample.
etag_ok () {
  local key=$1 size=$2 etag
  etag=$(s3 ls "s3://list/$key" | awk -F'\t' -v k="$key" '$4 == k { print $2 }')
  [ "$etag" = "\"$("$S3BD_TESTDATA" gen "$key" "$size" | md5sum | cut -d' ' -f1)\"" ]
}
check "listed ETags match the MD5 of the pattern" \
  bash -c "$(declare -f etag_ok s3); S3BD_S3=$S3BD_S3 S3BD_TESTDATA=$S3BD_TESTDATA; \
    etag_ok data/d00/f01.bin 1 && etag_ok data/d24/f99.bin $(( 2499 % 97 )) && etag_ok data/top3 1"
finish
