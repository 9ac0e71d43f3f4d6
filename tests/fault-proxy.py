#!/usr/bin/python3
"""A fault-injecting HTTP proxy for s3bd's tests (Python 3 standard library).

    fault-proxy.py --upstream http://127.0.0.1:PORT [--port N] [--seed N]

It listens on 127.0.0.1 (at a port the kernel picks unless --port), prints
that port on its first line of output, and forwards every request to the
upstream S3 server byte for byte, Host header included, so that SigV4
signatures stay valid; each client connection has its own kept-alive
upstream connection.  On ranged GETs (requests with a Range header, the
plugin's data path) it injects one fault, chosen with probability RATE per
request from a seeded generator:

  reset      headers and half the body, then a TCP reset
  short      headers (the full Content-Length) and half the body, then
             a clean close
  slowdown   503 SlowDown (the S3 error document), upstream not asked
  whole      200 instead of 206, Content-Range removed (the body as is)
  shift      Content-Range moved one byte on (bytes A+1-B+1/T)
  garbage    Content-Range that does not parse
  no-range   Content-Range removed
  total      Content-Range total one byte too large (bytes A-B/T+1)
  flip       one byte of the body changed (a random one), headers as
             they were: damage no header can show
  stall      headers and half the body, then nothing for STALL seconds
             (or until the client hangs up), then a close
  hang       the request is read and never answered, for STALL seconds
             (or until the client hangs up)
  trickle    the whole answer at TRICKLE bytes per second
  latency    the answer, LATENCY ms late

Body faults (reset, short, whole, shift, garbage, no-range, total, flip,
stall)
apply to 206 answers only; anything else passes through untouched.

Control, on the same port (no S3 bucket name starts with "__"):
  GET /__fault/set?mode=M&rate=R[&stall=S][&trickle=B][&latency=MS][&limit=N]
      sets the fault (mode none: no faults) and zeroes the counters;
      with limit, at most N faults are made
  GET /__fault/stats
      "mode M rate R requests N faults F" (ranged GETs seen, faults made)
"""
import argparse
import http.client
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

MODES = ('none', 'reset', 'short', 'slowdown', 'whole', 'shift', 'garbage',
         'no-range', 'total', 'flip', 'stall', 'hang', 'trickle', 'latency')

SLOWDOWN_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                b'SlowDown</Code><Message>Please reduce your request rate.'
                b'</Message></Error>')


class State:
    """The fault in force and its counters; one lock guards all."""

    def __init__(self, seed):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.mode = 'none'
        self.rate = 0.0
        self.stall = 60.0
        self.trickle = 2048
        self.latency = 0.2
        self.requests = 0
        self.faults = 0
        self.limit = 0

    def draw(self):
        """The fault for one ranged GET, or None."""
        with self.lock:
            self.requests += 1
            if self.mode == 'none' or self.rng.random() >= self.rate:
                return None
            if self.limit and self.faults >= self.limit:
                return None
            self.faults += 1
            return self.mode


def header(headers, name):
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def without(headers, *names):
    return [(n, v) for n, v in headers if n.lower() not in names]


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.sock = self.request
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile('rb')
        self.upstream = None

    def finish(self):
        if self.upstream is not None:
            self.upstream.close()
        self.rfile.close()

    def handle(self):
        try:
            while self.one_request():
                pass
        except (OSError, http.client.HTTPException, ValueError):
            pass  # the client or the upstream went away

    def read_request(self):
        line = self.rfile.readline(65537)
        while line in (b'\r\n', b'\n'):
            line = self.rfile.readline(65537)
        if not line:
            return None
        method, target, _ = line.decode('latin-1').rstrip('\r\n').split(' ', 2)
        headers = []
        while True:
            h = self.rfile.readline(65537)
            if h in (b'\r\n', b'\n', b''):
                break
            name, _, value = h.decode('latin-1').rstrip('\r\n').partition(':')
            headers.append((name, value.strip()))
        length = int(header(headers, 'content-length') or 0)
        body = self.rfile.read(length) if length else b''
        return method, target, headers, body

    def one_request(self):
        req = self.read_request()
        if req is None:
            return False
        method, target, headers, body = req
        if target.startswith('/__fault/'):
            return self.control(target)
        state = self.server.state
        fault = None
        if method == 'GET' and header(headers, 'range') is not None:
            fault = state.draw()
        if fault == 'slowdown':
            self.send(503, 'Slow Down', [('Content-Type', 'application/xml')],
                      SLOWDOWN_XML)
            return True
        if fault == 'hang':
            self.wait_for_hangup(state.stall)
            return False
        status, reason, rheaders, rbody = self.forward(method, target,
                                                       headers, body)
        if method == 'HEAD':
            self.send(status, reason, rheaders, b'', head=True)
            return True
        if fault == 'latency':
            time.sleep(state.latency)
        elif fault == 'trickle':
            return self.send(status, reason, rheaders, rbody,
                             rate=state.trickle)
        elif status == 206 and fault is not None:
            return self.body_fault(fault, status, reason, rheaders, rbody)
        self.send(status, reason, rheaders, rbody)
        return True

    def body_fault(self, fault, status, reason, rheaders, rbody):
        half = len(rbody) // 2
        crange = header(rheaders, 'content-range') or ''
        rest = without(rheaders, 'content-range')
        try:
            first_last, total = crange.split(' ', 1)[1].split('/')
            first, last = (int(x) for x in first_last.split('-'))
            total = int(total)
        except (IndexError, ValueError):
            first = last = total = 0
        if fault == 'reset':
            self.send_head(status, reason, rheaders, len(rbody))
            self.sock.sendall(rbody[:half])
            # Linger 0: close sends RST, not FIN.  Closed here, at once:
            # socketserver would shut the socket down (FIN) first.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack('ii', 1, 0))
            self.rfile.close()
            self.sock.close()
            return False
        if fault == 'short':
            self.send_head(status, reason, rheaders, len(rbody))
            self.sock.sendall(rbody[:half])
            self.sock.shutdown(socket.SHUT_WR)
            return False
        if fault == 'stall':
            self.send_head(status, reason, rheaders, len(rbody))
            self.sock.sendall(rbody[:half])
            self.wait_for_hangup(self.server.state.stall)
            return False
        if fault == 'whole':
            self.send(200, 'OK', rest, rbody)
        elif fault == 'shift':
            self.send(status, reason, rest + [
                ('Content-Range', 'bytes %d-%d/%d' % (first + 1, last + 1,
                                                      total))], rbody)
        elif fault == 'garbage':
            self.send(status, reason, rest + [
                ('Content-Range', 'bytes=%d-%d' % (first, last))], rbody)
        elif fault == 'no-range':
            self.send(status, reason, rest, rbody)
        elif fault == 'flip':
            b = bytearray(rbody)
            if b:
                i = self.server.state.rng.randrange(len(b))
                b[i] ^= 0x20
            self.send(status, reason, rheaders, bytes(b))
        elif fault == 'total':
            self.send(status, reason, rest + [
                ('Content-Range', 'bytes %d-%d/%d' % (first, last,
                                                      total + 1))], rbody)
        return True

    def forward(self, method, target, headers, body):
        """The upstream's answer: status, reason, headers, whole body."""
        for tries in (1, 2):
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(
                    self.server.upstream_host, self.server.upstream_port,
                    timeout=120)
            try:
                self.upstream.putrequest(method, target, skip_host=True,
                                         skip_accept_encoding=True)
                for n, v in headers:
                    self.upstream.putheader(n, v)
                self.upstream.endheaders(body if body else None)
                resp = self.upstream.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.upstream.close()
                    self.upstream = None
                return resp.status, resp.reason, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                # A kept-alive upstream connection closed under us: once
                # more on a new one.
                self.upstream.close()
                self.upstream = None
                if tries == 2:
                    raise
        raise AssertionError('not reached')

    def send_head(self, status, reason, headers, length, head=False):
        lines = ['HTTP/1.1 %d %s' % (status, reason)]
        for n, v in without(headers, 'content-length', 'transfer-encoding',
                            'connection', 'keep-alive'):
            lines.append('%s: %s' % (n, v))
        if head:
            cl = header(headers, 'content-length')
            if cl is not None:
                lines.append('Content-Length: %s' % cl)
        else:
            lines.append('Content-Length: %d' % length)
        self.sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1'))

    def send(self, status, reason, headers, body, head=False, rate=None):
        self.send_head(status, reason, headers, len(body), head)
        if rate is None:
            self.sock.sendall(body)
            return True
        # Trickle: a piece every 0.1 s.
        piece = max(1, rate // 10)
        for off in range(0, len(body), piece):
            self.sock.sendall(body[off:off + piece])
            time.sleep(0.1)
        return True

    def wait_for_hangup(self, seconds):
        """Holds the connection, reading nothing, until the client closes
        it or seconds have passed."""
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536, socket.MSG_PEEK):
                    return
                # The client sent more (a pipelined request): keep holding.
                time.sleep(0.2)
            except socket.timeout:
                continue

    def control(self, target):
        state = self.server.state
        url = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == '/__fault/set':
            mode = q.get('mode', 'none')
            if mode not in MODES:
                self.send(400, 'Bad Request', [], b'unknown mode\n')
                return True
            with state.lock:
                state.mode = mode
                state.rate = float(q.get('rate', '1'))
                state.stall = float(q.get('stall', state.stall))
                state.trickle = int(q.get('trickle', state.trickle))
                state.latency = float(q.get('latency', state.latency * 1000)) / 1000
                state.limit = int(q.get('limit', '0'))
                state.requests = state.faults = 0
            self.send(200, 'OK', [], b'ok\n')
        elif url.path == '/__fault/stats':
            with state.lock:
                line = 'mode %s rate %g requests %d faults %d\n' % (
                    state.mode, state.rate, state.requests, state.faults)
            self.send(200, 'OK', [], line.encode())
        else:
            self.send(404, 'Not Found', [], b'no such control\n')
        return True


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--upstream', required=True,
                    help='http://127.0.0.1:PORT of the S3 server')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--seed', type=int, default=1)
    args = ap.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    if up.scheme != 'http' or up.hostname != '127.0.0.1' or not up.port:
        ap.error('--upstream must be http://127.0.0.1:PORT')
    server = Server(('127.0.0.1', args.port), Handler)
    server.upstream_host = up.hostname
    server.upstream_port = up.port
    server.state = State(args.seed)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
