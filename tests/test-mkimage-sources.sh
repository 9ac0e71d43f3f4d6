#!/bin/bash
# Proves s3bd-mkimage's sources and options against a real S3 server:
# SageMaker manifests (local and s3://), augmented manifests over two
# buckets, shards that partition the dataset, byte-identical rebuilds,
# --upload; and that bad input (malformed manifest, missing object,
# missing bucket, nothing to serve, unwritable output) gives a clear error
# and leaves no output behind.
. "$(dirname "$0")/lib.sh"
MKIMAGE=$S3BD_BUILD_DIR/mkimage/s3bd-mkimage
start_server
mk () { "$MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$@"; }
s3 mb s3://src
s3 mb s3://other
for i in $(seq -w 0 29); do echo "$((10#$i * 100 + 1)) data/c$((10#$i % 3))/f$i.bin"; done > "$TMP/spec"
upload s3://src/ "$TMP/spec"
printf '7 imgs/a.jpg\n8 imgs/b.jpg\n' > "$TMP/spec2"
upload s3://other/ "$TMP/spec2"

# Files of an image, from its dump: path and object.
files () { "$MKIMAGE" --dump "$1" | cut -f1,2 | sort; }

# A manifest, local and in S3.
cat > "$TMP/m.json" <<'M'
[{"prefix": "s3://src/data/"}, "c0/f00.bin", "c1/f01.bin", "c2/f29.bin"]
M
mk --manifest "$TMP/m.json" -o "$TMP/m.s3bd"
check "manifest: exactly its 3 entries, at their relative paths" \
  test "$(files "$TMP/m.s3bd")" = "$(printf 'c0/f00.bin\ts3://src/data/c0/f00.bin\nc1/f01.bin\ts3://src/data/c1/f01.bin\nc2/f29.bin\ts3://src/data/c2/f29.bin')"
s3 put s3://src/manifests/m.json "$TMP/m.json" >/dev/null
mk --manifest s3://src/manifests/m.json -o "$TMP/m2.s3bd"
check "manifest read from S3 gives the same files" \
  test "$(files "$TMP/m.s3bd")" = "$(files "$TMP/m2.s3bd")"

# An augmented manifest over two buckets, with attribute selection.
cat > "$TMP/aug.jsonl" <<'A'
{"source-ref": "s3://src/data/c0/f03.bin", "label": 1, "mask-ref": "s3://other/imgs/a.jpg"}
{"source-ref": "s3://src/data/c1/f04.bin", "label": 0, "mask-ref": "s3://other/imgs/b.jpg"}
A
mk --augmented-manifest "$TMP/aug.jsonl" -o "$TMP/aug.s3bd"
check "augmented manifest: every -ref object, bucket-prefixed paths" \
  test "$(files "$TMP/aug.s3bd" | cut -f1 | tr '\n' ' ')" = "other/a.jpg other/b.jpg src/c0/f03.bin src/c1/f04.bin "
mk --augmented-manifest "$TMP/aug.jsonl" --attribute-names source-ref -o "$TMP/aug1.s3bd"
check "augmented manifest: --attribute-names selects" \
  test "$(files "$TMP/aug1.s3bd" | cut -f1 | tr '\n' ' ')" = "c0/f03.bin c1/f04.bin "
"$MKIMAGE" --materialize "$TMP/aug.s3bd" -o "$TMP/aug.img"
check "augmented-manifest image passes e2fsck -fn" e2fsck -fn "$TMP/aug.img"

# Shards partition the dataset.
mk s3://src/data/ -o "$TMP/all.s3bd"
for i in 0 1 2; do mk --shard "$i/3" s3://src/data/ -o "$TMP/s$i.s3bd"; done
check "shards 0/3, 1/3, 2/3 are disjoint and together hold every object" \
  test "$(cat <(files "$TMP/s0.s3bd") <(files "$TMP/s1.s3bd") <(files "$TMP/s2.s3bd") | sort)" = "$(files "$TMP/all.s3bd")"
check "shard 1/3 keeps objects 1, 4, 7... of the sorted list" \
  test "$(files "$TMP/s1.s3bd" | head -2 | cut -f1 | tr '\n' ' ')" = "c0/f03.bin c0/f12.bin "

# Deterministic: the same listing gives the same bytes.
mk s3://src/data/ -o "$TMP/all2.s3bd"
check "rebuilding gives a byte-identical index" cmp "$TMP/all.s3bd" "$TMP/all2.s3bd"
SOURCE_DATE_EPOCH=1234567890 mk s3://src/data/ -o "$TMP/sde.s3bd"
check "SOURCE_DATE_EPOCH changes the image" bash -c '! cmp -s "$1" "$2"' _ "$TMP/all.s3bd" "$TMP/sde.s3bd"

# --upload puts the same bytes in S3.
mk s3://src/data/ -o "$TMP/up.s3bd" --upload s3://other/indexes/data.s3bd
s3 get s3://other/indexes/data.s3bd > "$TMP/down.s3bd"
check "--upload stores the same index" cmp "$TMP/up.s3bd" "$TMP/down.s3bd"

# Bad input: a clear error, and nothing written.
no_output () { ! ls "$TMP"/out.s3bd* >/dev/null 2>&1; }
echo '[{"prefix": "s3://src/data/"}, "c0/f00.bin",' > "$TMP/bad.json"
expect_error "malformed manifest" "bad.json.*(JSON|json)" mk --manifest "$TMP/bad.json" -o "$TMP/out.s3bd"
check "malformed manifest leaves no output" no_output
echo '["c0/f00.bin"]' > "$TMP/noprefix.json"
expect_error "manifest without a prefix" "prefix" mk --manifest "$TMP/noprefix.json" -o "$TMP/out.s3bd"
echo '[{"prefix": "s3://src/data/"}, "c0/f00.bin", "c0/nope.bin"]' > "$TMP/missing.json"
expect_error "manifest entry that does not exist" "s3://src/data/c0/nope.bin: no such key" \
  mk --manifest "$TMP/missing.json" -o "$TMP/out.s3bd"
printf '{"source-ref": 5}\n' > "$TMP/bad.jsonl"
expect_error "augmented manifest with a non-URI" "line 1" mk --augmented-manifest "$TMP/bad.jsonl" -o "$TMP/out.s3bd"
expect_error "missing bucket" "no such bucket" mk s3://no-such-bucket/x/ -o "$TMP/out.s3bd"
expect_error "a prefix with no objects" "no objects" mk s3://src/nothing/ -o "$TMP/out.s3bd"
expect_error "an output path that cannot be written" "$TMP/no/such/dir" mk s3://src/data/ -o "$TMP/no/such/dir/x.s3bd"
expect_error "wrong credentials" "authentication failed" \
  env AWS_SECRET_ACCESS_KEY=wrong "$MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://src/data/ -o "$TMP/out.s3bd"
check "no failed build left output" no_output
expect_error "bad --shard" "--shard" mk --shard 3/3 s3://src/data/ -o "$TMP/out.s3bd"

# A corrupt index is reported, not trusted.
cp "$TMP/all.s3bd" "$TMP/corrupt.s3bd"
printf '\xff' | dd of="$TMP/corrupt.s3bd" bs=1 seek=400 conv=notrunc 2>/dev/null
expect_error "corrupt index" "corrupt|checksum" "$MKIMAGE" --dump "$TMP/corrupt.s3bd"
finish
