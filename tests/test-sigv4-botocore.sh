#!/bin/bash
# Proves that tests/data/sigv4-botocore.json (the S3 signatures with odd
# keys that tests/unit/test-sigv4.c checks s3bd's signer against) is what
# botocore computes today, so the unit test compares with botocore, not
# with a stale copy.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 -I -c 'import botocore' 2>/dev/null \
  || skip "Debian's python3-botocore is needed (scripts/install-deps)"
/usr/bin/python3 -I "$S3BD_SOURCE_DIR/tests/gen-sigv4-botocore.py" > "$TMP/now.json"
check "stored botocore vectors equal botocore's output" \
  cmp "$S3BD_SOURCE_DIR/tests/data/sigv4-botocore.json" "$TMP/now.json"
check "there are at least 10 vectors" \
  test "$(grep -c '"authorization"' "$TMP/now.json")" -ge 10
finish
