#!/bin/bash
# Proves that keys with spaces, unicode, '+', '%', '~', '=' and other
# punctuation round-trip between s3bd's client and an independent one
# (botocore): objects written by botocore are listed and read back byte
# for byte by s3bd, and objects written by s3bd are read back by botocore.
. "$(dirname "$0")/lib.sh"
start_server
s3 mb s3://odd

cat > "$TMP/keys" <<'KEYS'
space in name.bin
dir with space/inner file.txt
unicode/café/日本語/ሴ.bin
plus+sign+key
percent%41literal%key
tilde~key
equals=key=
star*paren(s)!quote'
colon:semi;comma,at@dollar$amp&
hash#question?bracket[]
emoji/😀.bin
KEYS

# botocore writes each key under from-boto/ with the pattern as its body.
i=0
while IFS= read -r key; do
  "$S3BD_TESTDATA" gen "from-boto/$key" $((i * 1013 + 1)) > "$TMP/body.$i"
  i=$((i + 1))
done < "$TMP/keys"
/usr/bin/python3 -I - "$TMP" <<'PY'
import os, sys
import botocore.session
from botocore.config import Config
tmp = sys.argv[1]
s3 = botocore.session.get_session().create_client(
    's3', endpoint_url=os.environ['S3BD_TEST_ENDPOINT'], region_name='us-east-1',
    config=Config(signature_version='s3v4', proxies={},
                  s3={'addressing_style': 'path'}))
with open(os.path.join(tmp, 'keys'), encoding='utf-8') as f:
    for i, key in enumerate(l.rstrip('\n') for l in f):
        with open(os.path.join(tmp, 'body.%d' % i), 'rb') as b:
            s3.put_object(Bucket='odd', Key='from-boto/' + key, Body=b.read())
PY

sed 's|^|from-boto/|' "$TMP/keys" | sort > "$TMP/want"
s3 ls s3://odd/from-boto/ | cut -f4 > "$TMP/got"
check "s3bd lists every key botocore wrote, exactly" cmp "$TMP/want" "$TMP/got"
s3 ls --parallel 4 s3://odd/from-boto/ | cut -f4 > "$TMP/gotp"
check "parallel listing gives the same keys" cmp "$TMP/want" "$TMP/gotp"

i=0
while IFS= read -r key; do
  size=$((i * 1013 + 1))
  check "GET '$key' returns its bytes" \
    bash -c '"$1" --endpoint "$2" --path-style get "s3://odd/from-boto/$3" | "$4" check "from-boto/$3" 0 >/dev/null && \
             test "$("$1" --endpoint "$2" --path-style get "s3://odd/from-boto/$3" | wc -c)" -eq "$5"' \
    _ "$S3BD_S3" "$S3BD_TEST_ENDPOINT" "$key" "$S3BD_TESTDATA" "$size"
  check "ranged GET of '$key' returns its bytes" \
    bash -c '"$1" --endpoint "$2" --path-style get --range "$(($5 / 2)):$(($5 - $5 / 2))" "s3://odd/from-boto/$3" | "$4" check "from-boto/$3" $(($5 / 2)) >/dev/null' \
    _ "$S3BD_S3" "$S3BD_TEST_ENDPOINT" "$key" "$S3BD_TESTDATA" "$size"
  i=$((i + 1))
done < "$TMP/keys"

# s3bd writes the same keys under from-s3bd/; botocore reads them back.
awk '{ print NR * 7 " " $0 }' "$TMP/keys" > "$TMP/spec"
upload s3://odd/from-s3bd/ "$TMP/spec"
/usr/bin/python3 -I - "$TMP" "$S3BD_TESTDATA" <<'PY' > "$TMP/boto-check"
import hashlib, os, subprocess, sys
import botocore.session
from botocore.config import Config
tmp, tool = sys.argv[1], sys.argv[2]
s3 = botocore.session.get_session().create_client(
    's3', endpoint_url=os.environ['S3BD_TEST_ENDPOINT'], region_name='us-east-1',
    config=Config(signature_version='s3v4', proxies={},
                  s3={'addressing_style': 'path'}))
with open(os.path.join(tmp, 'spec'), encoding='utf-8') as f:
    for line in f:
        size, key = line.rstrip('\n').split(' ', 1)
        key = 'from-s3bd/' + key
        body = s3.get_object(Bucket='odd', Key=key)['Body'].read()
        want = subprocess.run([tool, 'gen', key, size], check=True,
                              capture_output=True).stdout
        print('ok' if body == want else 'BAD ' + key)
PY
check "botocore reads back every object s3bd wrote" \
  test "$(grep -c '^ok$' "$TMP/boto-check")" -eq "$(wc -l < "$TMP/keys")"
finish
