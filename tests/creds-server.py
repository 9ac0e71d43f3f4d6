#!/usr/bin/python3
"""A credentials server for s3bd's tests (Python 3 standard library).

    creds-server.py --upstream URL --access-key K --secret-key S
                    --token-file F --ttl SECONDS --record FILE

Listens on 127.0.0.1 (a port the kernel picks, printed on the first line)
and plays three parts:

  STS        POST with Action=AssumeRoleWithWebIdentity: the
             WebIdentityToken must equal the current contents of
             --token-file (read at every request, so the test can rotate
             it); answers the AssumeRoleWithWebIdentity XML with the given
             key pair, a fresh session token "sessiontok-N" and an Expiration
             --ttl seconds on.
  STS        POST with Action=AssumeRole: the request must be signed
             (SigV4, service sts) with --access-key/--secret-key, checked
             with botocore's signer; answers the AssumeRole XML likewise.
  container  GET /container-creds: the Authorization header must equal
             the contents of --token-file; answers the container JSON.
  proxy      anything else goes to --upstream byte for byte (Host
             included, so SigV4 stays valid); for each such request one
             line "TOKEN SIGNED" goes to --record: the x-amz-security-token
             header ("-" when absent) and whether the Authorization
             header's SignedHeaders lists it.

Control: GET /__creds/mode?m=ok|deny|garbage|hang|http500 sets how STS and
container answer; GET /__creds/stats prints "sts N container N assume N".
"""
import argparse
import datetime
import http.client
import http.server
import sys
import threading
import time
import urllib.parse
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

lock = threading.Lock()
state = {'mode': 'ok', 'sts': 0, 'container': 0, 'assume': 0, 'n': 0}


def expiration(ttl):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ttl)
    return t.strftime('%Y-%m-%dT%H:%M:%SZ')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype='text/xml'):
        body = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def current_token(self):
        with open(args.token_file) as f:
            return f.read().strip()

    def misbehave(self, kind):
        mode = state['mode']
        if mode == 'hang':
            time.sleep(30)
            self.close_connection = True
            return True
        if mode == 'http500':
            self.reply(500, 'oops')
            return True
        if mode == 'garbage':
            self.reply(200, '<Assume' if kind == 'sts' else '{"AccessKeyId": ',
                       'text/xml' if kind == 'sts' else 'application/json')
            return True
        return False

    def creds(self):
        with lock:
            state['n'] += 1
            return 'sessiontok-%d' % state['n'], expiration(args.ttl)

    def signed_by_us(self, data):
        """Whether the AssumeRole request carries the signature botocore
        computes for it with our key pair (over the headers it signed)."""
        auth = self.headers.get('Authorization') or ''
        try:
            scope = auth.split('Credential=')[1].split(',')[0].split('/')
            names = auth.split('SignedHeaders=')[1].split(',')[0].split(';')
            sig = auth.split('Signature=')[1].strip()
        except IndexError:
            return False
        if scope[0] != args.access_key or scope[3] != 'sts' or 'host' not in names:
            return False
        amz = self.headers.get('X-Amz-Date') or ''
        req = AWSRequest(method='POST', url='http://%s%s' % (self.headers['Host'], self.path),
                         data=data, headers={n: self.headers[n] for n in names})
        signer = botocore.auth.SigV4Auth(Credentials(args.access_key, args.secret_key),
                                         'sts', scope[2])
        when = datetime.datetime.strptime(amz, '%Y%m%dT%H%M%SZ')
        with mock.patch('botocore.auth.datetime') as dt:
            dt.datetime.utcnow.return_value = when
            dt.datetime.now.return_value = when.replace(tzinfo=datetime.timezone.utc)
            signer.add_auth(req)
        want = req.headers['Authorization'].split('Signature=')[1].strip()
        return want == sig

    def do_POST(self):
        data = self.body()
        form = urllib.parse.parse_qs(data.decode('latin-1'))
        if form.get('Action') == ['AssumeRole']:
            return self.assume_role(form, data)
        if form.get('Action') != ['AssumeRoleWithWebIdentity']:
            return self.proxy(data)
        with lock:
            state['sts'] += 1
        if self.misbehave('sts'):
            return
        if state['mode'] == 'deny' or form.get('WebIdentityToken') != [self.current_token()]:
            return self.sts_denied('AssumeRoleWithWebIdentity')
        self.sts_answer('AssumeRoleWithWebIdentity', '')

    def sts_denied(self, action):
        self.reply(403, '<ErrorResponse><Error><Type>Sender</Type>'
                   '<Code>AccessDenied</Code><Message>Not authorized '
                   'to perform sts:%s</Message></Error></ErrorResponse>' % action)

    def sts_answer(self, action, extra):
        """STS's answer to action: credentials from self.creds(), then extra."""
        tok, exp = self.creds()
        self.reply(200, '''<%(a)sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <%(a)sResult>
    <Credentials>
      <AccessKeyId>%(ak)s</AccessKeyId>
      <SecretAccessKey>%(sk)s</SecretAccessKey>
      <SessionToken>%(tok)s</SessionToken>
      <Expiration>%(exp)s</Expiration>
    </Credentials>%(extra)s
  </%(a)sResult>
</%(a)sResponse>''' % dict(a=action, ak=args.access_key, sk=args.secret_key,
                           tok=tok, exp=exp, extra=extra))

    def assume_role(self, form, data):
        with lock:
            state['assume'] += 1
        if self.misbehave('sts'):
            return
        if state['mode'] == 'deny' or not self.signed_by_us(data) \
                or not form.get('RoleArn') or not form.get('RoleSessionName'):
            return self.sts_denied('AssumeRole')
        self.sts_answer('AssumeRole', '\n    <AssumedRoleUser><Arn>%s/s</Arn>'
                        '<AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>'
                        % form['RoleArn'][0])

    def do_GET(self):
        if self.path.startswith('/__creds/mode'):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            state['mode'] = q['m'][0]
            return self.reply(200, 'ok\n', 'text/plain')
        if self.path == '/__creds/stats':
            return self.reply(200, 'sts %d container %d assume %d\n'
                              % (state['sts'], state['container'], state['assume']),
                              'text/plain')
        if self.path == '/container-creds':
            with lock:
                state['container'] += 1
            if self.misbehave('container'):
                return
            if state['mode'] == 'deny' or self.headers.get('Authorization') != self.current_token():
                return self.reply(401, '{"message": "bad token"}', 'application/json')
            tok, exp = self.creds()
            return self.reply(200, '{"AccessKeyId": "%s", "SecretAccessKey": "%s", '
                              '"Token": "%s", "Expiration": "%s"}'
                              % (args.access_key, args.secret_key, tok, exp),
                              'application/json')
        self.proxy(b'')

    do_HEAD = do_GET
    do_PUT = do_DELETE = lambda self: self.proxy(self.body())

    def proxy(self, data):
        tok = self.headers.get('x-amz-security-token') or '-'
        auth = self.headers.get('Authorization') or ''
        signed = 'SignedHeaders=' in auth and 'x-amz-security-token' in \
            auth.split('SignedHeaders=')[1].split(',')[0].split(';')
        with lock, open(args.record, 'a') as f:
            f.write('%s %s\n' % (tok, 'signed' if signed else 'unsigned'))
        up = urllib.parse.urlsplit(args.upstream)
        c = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            c.putheader(k, v)
        c.endheaders(data if data or self.command in ('PUT', 'POST') else None)
        r = c.getresponse()
        body = r.read()
        self.send_response_only(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in ('connection', 'transfer-encoding', 'content-length'):
                self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        c.close()


ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
for a in ('--upstream', '--access-key', '--secret-key', '--token-file', '--record'):
    ap.add_argument(a, required=True)
ap.add_argument('--ttl', type=int, default=3600)
args = ap.parse_args()
srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
