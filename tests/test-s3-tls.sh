#!/bin/bash
# Proves that the client speaks HTTPS and checks the server's certificate:
# against a local server with a self-signed certificate for 127.0.0.1
# (scripts/s3-server with S3BD_S3_TLS=1), trusting that certificate through
# --ca-file or AWS_CA_BUNDLE it lists and reads the right bytes; trusting
# nothing (or another certificate) it fails at once with a certificate
# error, not after retries; --no-verify-tls skips the check.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || skip "the openssl command is needed (apt-get install openssl)"
S3BD_S3_TLS=1 start_server

https_endpoint () { [[ $S3BD_TEST_ENDPOINT =~ ^https://127\.0\.0\.1:[0-9]+$ ]]; }
check "the endpoint is https://127.0.0.1:PORT" https_endpoint
check "the certificate to trust is exported" test -s "${S3BD_TEST_CA:-}"

s3ca () { s3 --ca-file "$S3BD_TEST_CA" "$@"; }
# No CA at all, whatever the caller's environment holds.
s3_nothing_trusted () {
  env -u AWS_CA_BUNDLE "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$@"
}

s3ca mb s3://tls
cat > "$TMP/spec" <<'SPEC'
5000 small
20971521 twenty-mib-plus-one
SPEC
AWS_CA_BUNDLE=$S3BD_TEST_CA upload s3://tls/ "$TMP/spec"

# get_ok KEY OFFSET LENGTH COMMAND...: COMMAND (an s3bd-s3 ... get with
# options) gets the range, whose bytes must be the pattern.
get_ok () {
  local key=$1 off=$2 len=$3
  shift 3
  "$@" --range "$off:$len" "s3://tls/$key" > "$TMP/out" &&
    [ "$(stat -c %s "$TMP/out")" -eq "$len" ] &&
    "$S3BD_TESTDATA" check "$key" "$off" "$TMP/out" >/dev/null
}
listed_ok () {  # COMMAND...: lists both keys, nothing else
  [ "$("$@" ls s3://tls/ | cut -f4 | tr '\n' ' ')" = "small twenty-mib-plus-one " ]
}

check "--ca-file: ls lists the objects" listed_ok s3ca
check "--ca-file: GET of a small object" get_ok small 0 5000 s3ca get
check "--ca-file: 20 MiB+1 in 1 MiB chunks, 8 TLS connections" \
  get_ok twenty-mib-plus-one 0 20971521 s3ca --connections 8 get --chunk 1M
check "--ca-file: a range across a chunk boundary" \
  get_ok twenty-mib-plus-one 8388000 1000 s3ca get

# The lib adds "(after N attempts in M ms)" after the request when it has
# retried: the message must not have it, and must say what is wrong.
expect_error "no CA: ls fails at once with a certificate error" \
  "^s3bd-s3: LIST s3://tls/: [^(]*certificate" \
  s3_nothing_trusted --retries 8 ls s3://tls/
expect_error "no CA: get fails at once with a certificate error" \
  "^s3bd-s3: (HEAD|GET) s3://tls/small[^(]*: [^(]*certificate" \
  s3_nothing_trusted --retries 8 get s3://tls/small
no_retry () {  # s3bd-s3 ARGS...: fails, and says nothing of attempts
  local out
  if out=$(s3_nothing_trusted --retries 8 "$@" 2>&1); then return 1; fi
  ! grep -q attempts <<<"$out"
}
check "no CA: not retried (no attempts in the message)" no_retry ls s3://tls/

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$TMP/other.key" -out "$TMP/other.pem" -days 1 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
expect_error "another certificate for 127.0.0.1 is not trusted" \
  "^s3bd-s3: LIST s3://tls/: [^(]*certificate" \
  s3 --ca-file "$TMP/other.pem" ls s3://tls/
expect_error "a missing --ca-file is a clear error" \
  "^s3bd-s3: LIST s3://tls/: [^(]*certificate.*no-such-ca\.pem" \
  s3 --ca-file "$TMP/no-such-ca.pem" ls s3://tls/

check "AWS_CA_BUNDLE: ls lists the objects" \
  listed_ok env AWS_CA_BUNDLE="$S3BD_TEST_CA" "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style
check "AWS_CA_BUNDLE: GET in 1 MiB chunks" \
  get_ok twenty-mib-plus-one 0 20971521 \
  env AWS_CA_BUNDLE="$S3BD_TEST_CA" "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style get --chunk 1M

check "--no-verify-tls: ls lists the objects" listed_ok s3_nothing_trusted --no-verify-tls
check "--no-verify-tls: GET" get_ok small 0 5000 s3_nothing_trusted --no-verify-tls get
finish
