#!/usr/bin/python3
"""Signs S3 requests with odd keys using botocore's S3SigV4Auth and prints
them as JSON, for tests/unit/test-sigv4.c.  Run with Debian's python3
(python3-botocore).  tests/test-sigv4-botocore.sh checks that the stored
tests/data/sigv4-botocore.json still matches this output.
"""
import datetime
import json
import sys
import urllib.parse
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS = "test:tester"   # tempauth-style id with a colon, as with Swift
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEBYaDH+token/with=odd+chars=="
WHEN = datetime.datetime(2026, 11, 25, 12, 34, 56)
ENDPOINT = "http://127.0.0.1:9000"

KEYS = [
    "plain.bin",
    "dir/sub/file name with spaces.txt",
    "unicode/caf\u00e9/\u65e5\u672c\u8a9e/\u1234.bin",
    "plus+sign+key",
    "percent%20literal%key",
    "tilde~and=equals",
    "star*paren(s)!quote'",
    "dots/./and/../segments//double",
    "colon:semi;comma,at@dollar$amp&",
    "hash#question?bracket[]",
]


def sign(name, method, key, params=(), headers=None, token=None, body=b""):
    creds = Credentials(ACCESS, SECRET, token)
    path = "/bucket/" + key
    url = ENDPOINT + urllib.parse.quote(path, safe="/~")
    req = AWSRequest(method=method, url=url, params=list(params),
                     headers=dict(headers or {}), data=body)
    auth = botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1")
    with mock.patch.object(botocore.auth.datetime, "datetime") as dt:
        dt.utcnow.return_value = WHEN
        req.context["timestamp"] = WHEN.strftime(botocore.auth.SIGV4_TIMESTAMP)
        auth._modify_request_before_signing(req)
        canonical = auth.canonical_request(req)
        sts = auth.string_to_sign(req, canonical)
        sig = auth.signature(sts, req)
        auth._inject_signature_to_request(req, sig)
    signed = auth.headers_to_sign(req)
    hdrs = {k: v for k, v in signed.items()
            if k not in ("authorization",)}
    return {
        "name": name,
        "method": method,
        "path": path,
        "query": [[k, v] for k, v in params],
        "headers": hdrs,
        "payload_sha256": req.headers["X-Amz-Content-SHA256"],
        "amz_date": req.context["timestamp"],
        "region": "us-east-1",
        "access_key": ACCESS,
        "secret_key": SECRET,
        "canonical_request": canonical,
        "authorization": req.headers["Authorization"],
    }


def main():
    out = []
    for i, key in enumerate(KEYS):
        out.append(sign("get-%d" % i, "GET", key,
                        headers={"Range": "bytes=0-4095",
                                 "If-Match": '"0123456789abcdef0123456789abcdef"'}))
    out.append(sign("head-token", "HEAD", KEYS[2], token=TOKEN))
    out.append(sign("list", "GET", "",
                    params=[("list-type", "2"),
                            ("prefix", "data/caf\u00e9 x+y/"),
                            ("encoding-type", "url"),
                            ("delimiter", "/"),
                            ("continuation-token", "1/abc+def=="),
                            ("max-keys", "1000")]))
    out.append(sign("put", "PUT", "up/load+me.bin", body=b"hello, world\n"))
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
