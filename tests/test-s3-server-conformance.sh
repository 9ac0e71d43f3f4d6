#!/usr/bin/env bash
# Conformance check of the local S3 test endpoint (scripts/s3-server): does
# Swift's s3api behave like S3 in the ways s3bd relies on?  Starts a server,
# runs the checks with botocore, stops the server.
#
# Exit: 0 all passed, 1 a check failed (or the server did not start),
#       77 skipped (/usr/bin/python3 cannot import swift or botocore).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
S3_SERVER=$ROOT/scripts/s3-server

# Debian's interpreter, isolated from PYTHONPATH & user site-packages (the
# python3 on PATH may be a pyenv one without Debian's modules).
if ! /usr/bin/python3 -I -c 'import swift, botocore' 2>/dev/null; then
	echo "SKIP: /usr/bin/python3 cannot import swift and botocore" \
		"(apt-get install python3-swift python3-botocore)"
	exit 77
fi

if ! server_env=$("$S3_SERVER" start); then
	echo "FAIL: scripts/s3-server start"
	exit 1
fi
eval "$server_env"
trap '"$S3_SERVER" stop "$S3BD_TEST_SERVER_DIR"' EXIT
trap 'exit 1' INT TERM HUP  # still run the EXIT trap

/usr/bin/python3 -I - <<'EOF'
import hashlib
import os
import sys

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ['S3BD_TEST_ENDPOINT']
assert ENDPOINT.startswith('http://127.0.0.1:'), ENDPOINT


def client(secret=None, access_key=None):
    # Credentials from the variables "s3-server start" exported, passed
    # explicitly so that an ambient AWS profile cannot interfere.
    # proxies={}: never via http_proxy; 127.0.0.1 only.
    return botocore.session.get_session().create_client(
        's3', endpoint_url=ENDPOINT,
        region_name=os.environ['AWS_REGION'],
        aws_access_key_id=access_key or os.environ['AWS_ACCESS_KEY_ID'],
        aws_secret_access_key=secret or os.environ['AWS_SECRET_ACCESS_KEY'],
        config=Config(signature_version='s3v4', proxies={},
                      s3={'addressing_style': 'path'},
                      retries={'max_attempts': 0}))


s3 = client()
BUCKET = 'conformance'
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # report every failure, keep going
        failed += 1
        print('FAIL %s: %s: %s' % (name, type(e).__name__, e))
    else:
        passed += 1
        print('PASS %s' % name)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def status(resp):
    return resp['ResponseMetadata']['HTTPStatusCode']


def expect_error(fn, http_status, code=None):
    try:
        fn()
    except ClientError as e:
        got_status = e.response['ResponseMetadata']['HTTPStatusCode']
        got_code = e.response['Error'].get('Code')
        expect(got_status == http_status and code in (None, got_code),
               'expected %s %s, got %s %s' % (http_status, code or '',
                                              got_status, got_code))
    else:
        raise AssertionError('expected %s %s, got success'
                             % (http_status, code or ''))


DATA = os.urandom(100 * 1024 + 7)
ETAG = '"%s"' % hashlib.md5(DATA).hexdigest()


def create_bucket():
    expect(status(s3.create_bucket(Bucket=BUCKET)) == 200, 'status')
    names = [b['Name'] for b in s3.list_buckets()['Buckets']]
    expect(BUCKET in names, 'bucket not listed: %r' % names)


def put_get():
    r = s3.put_object(Bucket=BUCKET, Key='obj', Body=DATA)
    expect(r['ETag'] == ETAG, 'PUT ETag %s != %s' % (r['ETag'], ETAG))
    r = s3.get_object(Bucket=BUCKET, Key='obj')
    body = r['Body'].read()
    expect(status(r) == 200, 'status %s' % status(r))
    expect(body == DATA, 'body differs (%d bytes)' % len(body))
    expect(r['ETag'] == ETAG, 'GET ETag %s' % r['ETag'])
    expect(r['ContentLength'] == len(DATA), 'length %s' % r['ContentLength'])


def ranged_get(rng, first, last):
    def fn():
        r = s3.get_object(Bucket=BUCKET, Key='obj', Range=rng)
        body = r['Body'].read()
        expect(status(r) == 206, 'status %s' % status(r))
        want = 'bytes %d-%d/%d' % (first, last, len(DATA))
        expect(r['ContentRange'] == want,
               'Content-Range %r != %r' % (r['ContentRange'], want))
        expect(body == DATA[first:last + 1], 'wrong bytes')
    return fn


def range_beyond_end():
    n = len(DATA)
    expect_error(lambda: s3.get_object(
        Bucket=BUCKET, Key='obj', Range='bytes=%d-%d' % (n, n + 10)),
        416, 'InvalidRange')


def if_match_wrong():
    expect_error(lambda: s3.get_object(
        Bucket=BUCKET, Key='obj', IfMatch='"0123456789abcdef0123456789abcdef"'),
        412, 'PreconditionFailed')


def if_match_right():
    r = s3.get_object(Bucket=BUCKET, Key='obj', IfMatch=ETAG)
    expect(status(r) == 200 and r['Body'].read() == DATA, 'plain GET')
    r = s3.get_object(Bucket=BUCKET, Key='obj', IfMatch=ETAG,
                      Range='bytes=0-9')
    expect(status(r) == 206 and r['Body'].read() == DATA[:10], 'ranged GET')


def wrong_secret():
    expect_error(lambda: client(secret='not-the-secret').head_object(
        Bucket=BUCKET, Key='obj'), 403)
    expect_error(lambda: client(secret='not-the-secret').list_buckets(),
                 403, 'SignatureDoesNotMatch')


def wrong_access_key():
    # Real S3 says InvalidAccessKeyId; Swift's tempauth cannot tell an unknown
    # user from a bad signature and says SignatureDoesNotMatch.  Only the
    # status is checked, so s3bd must not rely on the code.
    expect_error(lambda: client(access_key='test:nobody').list_buckets(), 403)


def list_paging():
    keys = ['page/k%d' % i for i in range(5)]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    got, pages, kwargs = [], [], {}
    while True:
        r = s3.list_objects_v2(Bucket=BUCKET, Prefix='page/', MaxKeys=2,
                               **kwargs)
        page = [o['Key'] for o in r.get('Contents', [])]
        pages.append(len(page))
        got += page
        if not r['IsTruncated']:
            break
        kwargs = {'ContinuationToken': r['NextContinuationToken']}
        expect(len(pages) < 10, 'no end of listing')
    expect(got == keys, 'listed %r' % got)
    expect(pages == [2, 2, 1], 'page sizes %r' % pages)


WEIRD_KEY = 'dir with spaces/ünïcødé 日本 a+b%20c~d=e&f;g,h@i$j!k(l)\'m.bin'


def weird_key():
    body = WEIRD_KEY.encode('utf-8')
    s3.put_object(Bucket=BUCKET, Key=WEIRD_KEY, Body=body)
    r = s3.get_object(Bucket=BUCKET, Key=WEIRD_KEY)
    expect(r['Body'].read() == body, 'GET body')
    r = s3.head_object(Bucket=BUCKET, Key=WEIRD_KEY)
    expect(r['ContentLength'] == len(body), 'HEAD length')
    listed = [o['Key'] for o in s3.list_objects_v2(
        Bucket=BUCKET, Prefix='dir with spaces/')['Contents']]
    expect(listed == [WEIRD_KEY], 'listed %r' % listed)
    # '+' must be a plus, not a space: the space variant must not exist.
    expect_error(lambda: s3.head_object(
        Bucket=BUCKET, Key=WEIRD_KEY.replace('+', ' ')), 404)


def head_missing():
    expect_error(lambda: s3.head_object(Bucket=BUCKET, Key='no-such-key'),
                 404)
    expect_error(lambda: s3.get_object(Bucket=BUCKET, Key='no-such-key'),
                 404, 'NoSuchKey')


def missing_bucket():
    expect_error(lambda: s3.list_objects_v2(Bucket='no-such-bucket'),
                 404, 'NoSuchBucket')
    expect_error(lambda: s3.get_object(Bucket='no-such-bucket', Key='k'),
                 404, 'NoSuchBucket')


check('create bucket', create_bucket)
check('PUT/GET round trip', put_get)
check('ranged GET bytes=1000-1999', ranged_get('bytes=1000-1999', 1000, 1999))
check('ranged GET bytes=N- (to end)',
      ranged_get('bytes=%d-' % (len(DATA) - 100), len(DATA) - 100,
                 len(DATA) - 1))
check('ranged GET bytes=-100 (suffix)',
      ranged_get('bytes=-100', len(DATA) - 100, len(DATA) - 1))
check('ranged GET last byte past end is clamped',
      ranged_get('bytes=%d-%d' % (len(DATA) - 10, len(DATA) + 1000),
                 len(DATA) - 10, len(DATA) - 1))
check('Range beyond end -> 416', range_beyond_end)
check('If-Match wrong ETag -> 412', if_match_wrong)
check('If-Match right ETag -> 200/206', if_match_right)
check('wrong secret -> 403', wrong_secret)
check('unknown access key -> 403', wrong_access_key)
check('ListObjectsV2 MaxKeys=2 paging over 5 keys', list_paging)
check('key with spaces, unicode, + % ~ = round-trips', weird_key)
check('HEAD missing key -> 404', head_missing)
check('missing bucket -> NoSuchBucket', missing_bucket)

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
EOF
rc=$?
# Anything but 0/1 (e.g. a Python crash) is a failure, never a "skip".
[ "$rc" -eq 0 ] || rc=1
exit "$rc"
