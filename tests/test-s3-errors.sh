#!/bin/bash
# Proves that bad input and failures give a clear, specific error and
# never data: an object changed after its ETag was taken (412), wrong
# credentials, a missing bucket or key, no credentials at all, a bad
# endpoint, and an unreachable server (retried, then given up within the
# bound).  Also that no secret appears in any message.
. "$(dirname "$0")/lib.sh"
start_server
s3 mb s3://errs
printf '5000 obj\n' > "$TMP/spec"
upload s3://errs/ "$TMP/spec"
etag=$(s3 head s3://errs/obj | cut -f2)

check "GET with the right If-Match succeeds" \
  bash -c '"$1" --endpoint "$2" --path-style get --if-match "$3" s3://errs/obj | "$4" check obj 0 >/dev/null' \
  _ "$S3BD_S3" "$S3BD_TEST_ENDPOINT" "$etag" "$S3BD_TESTDATA"

# Overwrite the object: a reader holding the old ETag must be refused.
printf '5000 obj\n' > "$TMP/spec2"
head -c 5000 /dev/zero > "$TMP/zeros"
s3 put s3://errs/obj "$TMP/zeros" >/dev/null
expect_error "object changed after its ETag was taken (412)" \
  "object changed since it was indexed.*HTTP 412" \
  s3 get --if-match "$etag" --range 0:4096 s3://errs/obj
expect_error "412 is not retried" "^s3bd-s3: GET s3://errs/obj bytes 0-4095: " \
  s3 get --if-match "$etag" --range 0:4096 s3://errs/obj

expect_error "wrong secret key" "authentication failed \(SignatureDoesNotMatch\).*from environment" \
  env AWS_SECRET_ACCESS_KEY=not-the-secret-xyzzy "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style ls s3://errs/
check "the wrong secret is not printed" \
  bash -c '! env AWS_SECRET_ACCESS_KEY=not-the-secret-xyzzy "$1" --endpoint "$2" --path-style ls s3://errs/ 2>&1 | grep -q xyzzy' \
  _ "$S3BD_S3" "$S3BD_TEST_ENDPOINT"
expect_error "wrong access key id" "authentication failed \((InvalidAccessKeyId|SignatureDoesNotMatch)\)" \
  env AWS_ACCESS_KEY_ID=nobody:none "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style get s3://errs/obj
expect_error "missing bucket" "^s3bd-s3: LIST s3://no-such-bucket/: no such bucket$" \
  s3 ls s3://no-such-bucket/
expect_error "missing bucket on GET" "no such (bucket|key)" \
  s3 get --range 0:10 s3://no-such-bucket/obj
expect_error "missing key (HEAD)" "^s3bd-s3: HEAD s3://errs/nope: no such key \\(or no such bucket\\)$" \
  s3 head s3://errs/nope
expect_error "missing key (GET)" "^s3bd-s3: GET s3://errs/nope bytes 0-9: no such key$" \
  s3 get --range 0:10 s3://errs/nope
expect_error "no credentials anywhere" "no credentials found" \
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TMP" \
  "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style ls s3://errs/
expect_error "endpoint that is not a URL" "endpoint .*not a URL|scheme must be" \
  "$S3BD_S3" --endpoint "ftp://127.0.0.1:1" ls s3://errs/
expect_error "not an S3 URI" "not an S3 URI" s3 ls errs/

# A port nobody listens on: connection refused is transient, retried with
# backoff up to --retries attempts, then reported with the count.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s%N)
expect_error "unreachable server: retried, then a clear error" \
  "LIST s3://errs/ \(after 4 attempts in [0-9]+ ms\): .*(connect|refused)" \
  "$S3BD_S3" --endpoint "http://127.0.0.1:$port" --retries 4 ls s3://errs/
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "retries stay within their bound (${elapsed_ms} ms < 10 s)" test "$elapsed_ms" -lt 10000
finish
