#!/usr/bin/python3
# swift-launcher.py DIR -- a throw-away, single-process OpenStack Swift with
# the S3 API (s3api + tempauth), for s3bd's tests and benchmarks.
#
# Run it with Debian's interpreter (/usr/bin/python3, python3-swift 2.30);
# normally it is started by scripts/s3-server, not by hand.
#
# One process imports Swift once and serves the proxy, object, container and
# account servers as eventlet greenthreads; four stock swift-*-server programs
# would each pay Swift's import cost.  Everything (swift.conf, rings, server
# configs, data) lives under DIR; /etc/swift is never written, and what
# Swift's import peeks at there is discarded.
#
# Sequence: bind the four listening sockets on 127.0.0.1 port 0 (the kernel
# picks free ports, so concurrent test runs never collide; S3BD_S3_PORT
# fixes the S3 one), build one-replica
# one-device rings naming those ports, load the WSGI apps, serve on the
# already-bound sockets, then write the proxy port to DIR/port (readiness).
#
# Options (environment; scripts/s3-server validates and passes them):
#   S3BD_S3_WORKERS=N  (default 1) after loading the apps, fork N-1 more
#       processes that serve the same already-bound sockets (so the ports in
#       the rings stay valid for all of them): uses N cores.  Each process
#       keeps its own DictMemcache; they share a generation number so that
#       a change of an account or container in one invalidates the cached
#       info in all (see DictMemcache).  The workers leave when the first
#       process does (checked every 2 s); it exits if a worker dies.
#   S3BD_S3_TLS=1  serve the proxy (S3) over HTTPS with DIR/ca.pem (a
#       self-signed certificate) and DIR/key.pem, which scripts/s3-server
#       makes with openssl.  The object/container/account servers, reached
#       by the proxy only, stay plain HTTP.
#   S3BD_S3_PORT=N  (default 0: the kernel picks) serve S3 on this port,
#       so that a server stopped and started again on the same DIR (the
#       data stays there; the rings are rebuilt at every start) keeps its
#       address: see "s3-server restart".  The internal servers still take
#       kernel-picked ports.  A port still held for a moment (a connection
#       of the last server lingering, say) is tried again for up to
#       S3BD_S3_BIND_TIMEOUT seconds (default 10).  No SO_REUSEPORT: a
#       second server on the same port fails instead of sharing it.
#
# Credentials: access key "test:tester", secret "testing" (tempauth, .admin);
# region us-east-1.  Log: stderr (scripts/s3-server sends it to DIR/server.log);
# warnings and errors only, unless S3BD_SWIFT_DEBUG=1 (adds one access-log line
# per request and Swift's debug chatter).

import os
import sys

if len(sys.argv) != 2 or sys.argv[1].startswith('-'):
    sys.exit('usage: swift-launcher.py DIR')
DIR = os.path.abspath(sys.argv[1])
DEBUG = os.environ.get('S3BD_SWIFT_DEBUG', '') not in ('', '0')
_workers = os.environ.get('S3BD_S3_WORKERS', '') or '1'
if not _workers.isdigit() or not 1 <= int(_workers) <= 64:
    sys.exit('swift-launcher: S3BD_S3_WORKERS=%s: want 1 to 64' % _workers)
WORKERS = int(_workers)
_tls = os.environ.get('S3BD_S3_TLS', '')
if _tls not in ('', '0', '1'):
    sys.exit('swift-launcher: S3BD_S3_TLS=%s: want 0 or 1' % _tls)
TLS = _tls == '1'
TLS_CERT = os.path.join(DIR, 'ca.pem')
TLS_KEY = os.path.join(DIR, 'key.pem')
_port = os.environ.get('S3BD_S3_PORT', '') or '0'
if not _port.isdigit() or int(_port) > 65535:
    sys.exit('swift-launcher: S3BD_S3_PORT=%s: want a TCP port, 1 to 65535 '
             '(0: any)' % _port)
PORT = int(_port)
try:
    BIND_TIMEOUT = float(os.environ.get('S3BD_S3_BIND_TIMEOUT', '') or '10')
except ValueError:
    sys.exit('swift-launcher: S3BD_S3_BIND_TIMEOUT: want seconds')

# eventlet's green DNS resolver costs ~0.15 s of imports; every address used
# here is a literal 127.0.0.1.  Must be set before eventlet is imported.
os.environ.setdefault('EVENTLET_NO_GREENDNS', 'yes')
# Swift does this too (run_server): fixes log/HTTP dates to UTC and saves a
# stat of /etc/localtime per time conversion.
os.environ['TZ'] = 'UTC+0'

import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

time.tzset()

import eventlet  # noqa: E402
import eventlet.debug  # noqa: E402
import eventlet.wsgi  # noqa: E402

# Same patch set as swift.common.utils.eventlet_monkey_patch(), applied before
# Swift is imported so every module binds the green socket/thread objects.
eventlet.patcher.monkey_patch(all=False, socket=True, select=True, thread=True)
# Logging thread names while monkey-patched can deadlock (Swift bug 1895739).
logging.logThreads = 0

# Point Swift at DIR/swift.conf before storage_policy / constraints are
# imported: both parse SWIFT_CONF_FILE at import time, and a broken or
# exotic /etc/swift/swift.conf must not be able to stop us.  (Importing
# swift.common.utils alone reads /etc/swift/swift.conf for the hash prefix,
# but tolerates it being absent; we reset what it read below.)
from swift.common import utils  # noqa: E402

SWIFT_CONF = os.path.join(DIR, 'swift.conf')
utils.SWIFT_CONF_FILE = SWIFT_CONF
utils.HASH_PATH_PREFIX = utils.HASH_PATH_SUFFIX = b''

# Swift logs to syslog (/dev/log, else UDP localhost:514).  Every get_logger()
# call constructs utils.ThreadSafeSysLogHandler by module-global name, so
# replacing that name routes all of Swift's loggers to our stderr instead.


class _StderrLogHandler(logging.StreamHandler):
    def __init__(self, address=None, facility=None):
        super().__init__(sys.stderr)

    def format(self, record):
        # Swift's format is "%(server)s: %(message)s"; syslog would add the
        # timestamp, so add one here.
        return '%s %s' % (time.strftime('%Y-%m-%d %H:%M:%S'),
                          super().format(record))


utils.ThreadSafeSysLogHandler = _StderrLogHandler


# --- memcached stand-in ----------------------------------------------------
# The proxy (account/container info), tempauth (tokens) and ratelimit want
# memcached in env['swift.cache'].  One dict in this process does the job and
# spares the tests a memcached dependency.  Values go through JSON like
# MemcacheRing's serialize=True, so callers get fresh copies, as from memcached.
#
# With several worker processes each has its own dict, but the proxy caches
# account and container info (existence too: a 404 for 6 s), so a bucket
# made through one worker could stay missing for another.  Swift deletes
# the cached info after every account/container PUT, POST or DELETE; here a
# delete also writes a new value into an 8-byte generation shared by all
# workers (an anonymous shared mmap made before the fork), and every read
# first empties the local dict if the generation changed since its last
# read.  A set() never syncs: a value fetched before someone else's change
# but stored after it is dropped at the next read.  (Tempauth's Swift-API
# tokens stay per worker; the S3 API does not use them.)

_now = time.time  # the methods below have a "time" (TTL) parameter


class DictMemcache(object):
    MAX_ENTRIES = 100000

    def __init__(self):
        self._data = {}  # key -> (expires_at or 0, serialized?, value)
        self._shared = None  # mmap holding the generation, if shared
        self._seen = None  # the generation the contents of _data belong to
        self._bumps = 0

    def share(self):
        """Before forking workers: make invalidations cross processes."""
        import mmap
        self._shared = mmap.mmap(-1, 8)  # MAP_SHARED | MAP_ANONYMOUS
        self._seen = self._shared[:8]

    def _sync(self):
        if self._shared is not None:
            gen = self._shared[:8]
            if gen != self._seen:
                self._data.clear()
                self._seen = gen

    def _bump(self):
        # Any value that differs will do, even a torn one: unique per
        # process and call.
        if self._shared is not None:
            self._bumps += 1
            self._shared[:8] = struct.pack('<II', os.getpid(),
                                           self._bumps & 0xffffffff)

    @staticmethod
    def _expiry(ttl):
        # memcached semantics: 0 = never; > 30 days = absolute Unix time.
        ttl = int(ttl or 0)
        if ttl <= 0:
            return 0
        return ttl if ttl > 30 * 86400 else _now() + ttl

    def _live(self, key):
        self._sync()
        item = self._data.get(key)
        if item is not None and item[0] and item[0] <= _now():
            del self._data[key]
            return None
        return item

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False):
        if len(self._data) >= self.MAX_ENTRIES:
            now = _now()
            self._data = {k: v for k, v in self._data.items()
                          if not v[0] or v[0] > now}
            if len(self._data) >= self.MAX_ENTRIES:
                self._data.clear()
        if serialize:
            value = json.dumps(value)
        self._data[key] = (self._expiry(time), serialize, value)

    def get(self, key, raise_on_error=False):
        item = self._live(key)
        if item is None:
            return None
        return json.loads(item[2]) if item[1] else item[2]

    def incr(self, key, delta=1, time=0):
        item = self._live(key)
        if item is None:
            value = max(int(delta), 0)
            self._data[key] = (self._expiry(time), False, str(value))
        else:
            value = max(int(json.loads(item[2]) if item[1] else item[2])
                        + int(delta), 0)
            self._data[key] = (item[0], False, str(value))
        return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, delta=-int(delta), time=time)

    def delete(self, key, server_key=None):
        self._data.pop(key, None)
        self._bump()

    def set_multi(self, mapping, server_key, serialize=True, time=0,
                  min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, serialize=serialize, time=time)

    def get_multi(self, keys, server_key):
        return [self.get(key) for key in keys]


MEMCACHE = DictMemcache()


def cache_filter_factory(global_conf, **local_conf):
    """paste.deploy filter factory replacing egg:swift#memcache."""
    def cache_filter(app):
        def cache_middleware(env, start_response):
            env['swift.cache'] = MEMCACHE
            return app(env, start_response)
        return cache_middleware
    return cache_filter


# paste.deploy resolves "module:attr" with __import__; this script's file
# name is not importable, so publish it under a module name.
sys.modules['s3bd_swift_launcher'] = sys.modules[__name__]


# --- configuration -----------------------------------------------------------

SERVERS = ('proxy', 'object', 'container', 'account')
DEVICE = 'd1'

SWIFT_CONF_TEXT = """\
[swift-hash]
swift_hash_path_suffix = s3bd-test-suffix
swift_hash_path_prefix = s3bd-test-prefix

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
# 5 GiB + 2, Swift's default, stated explicitly: S3's single-PUT limit.
max_file_size = 5368709122
"""

COMMON_DEFAULTS = """\
[DEFAULT]
swift_dir = {dir}
devices = {dir}/devices
mount_check = false
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
log_name = {name}
log_level = {log_level}
"""

SERVER_CONFS = {
    'proxy': """
[pipeline:main]
# Swift's sample pipeline with s3api just before tempauth (as the s3api docs
# require) and the optional bits s3bd does not use left out.  copy/slo/dlo/
# versioned_writes are listed so the proxy does not have to insert them (and
# slo after s3api enables multipart upload).
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# One replica: never stop talking to the only node after a few errors
# (the default shuns it for 60 s after 10 errors, failing every request).
error_suppression_interval = 0
error_suppression_limit = 1000000000
# Larger chunks: fewer Python iterations per byte on big GETs/PUTs.
object_chunk_size = 1048576
client_chunk_size = 1048576

[filter:cache]
# In-process dict instead of memcached (see DictMemcache).
paste.filter_factory = s3bd_swift_launcher:cache_filter_factory

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
# Without this, a deprecation warning about sha1 at every start.
allowed_digests = sha256 sha512
[filter:ratelimit]
use = egg:swift#ratelimit
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
""",
    'object': """
[pipeline:main]
pipeline = object-server

[app:object-server]
use = egg:swift#object
# Keep objects (of any size, fetched by any user) in the page cache, so that
# benchmarks measure s3bd rather than the disk.  Default: 5 MiB, public only.
keep_cache_size = 107374182400
keep_cache_private = true
# No fdatasync + cache drop every 512 MiB while a large PUT is written.
mb_per_sync = 1000000
# Bigger chunks for PUT bodies.  disk_chunk_size stays at 64 KiB: a ranged
# GET reads whole disk chunks (and MD5s them if the range starts at 0), so
# 1 MiB chunks make s3bd's small ranged reads slower.
network_chunk_size = 1048576
""",
    'container': """
[pipeline:main]
pipeline = container-server

[app:container-server]
use = egg:swift#container
""",
    'account': """
[pipeline:main]
pipeline = account-server

[app:account-server]
use = egg:swift#account
""",
}


def write_file(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, path)


def build_ring(name, port, part_power=8):
    """One replica, one device on 127.0.0.1:port -> DIR/<name>.ring.gz."""
    from swift.common.ring import RingBuilder
    builder = RingBuilder(part_power, 1, 1)
    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1',
                     'port': port, 'device': DEVICE, 'weight': 1.0,
                     'meta': ''})
    builder.rebalance()
    builder.get_ring().save(os.path.join(DIR, name + '.ring.gz'))


def main():
    os.makedirs(os.path.join(DIR, 'devices', DEVICE), exist_ok=True)
    try:
        os.unlink(os.path.join(DIR, 'port'))  # stale: not ready yet
    except FileNotFoundError:
        pass

    eventlet.hubs.use_hub(utils.get_hub())  # poll, as Swift chooses
    eventlet.debug.hub_exceptions(DEBUG)

    # 1. Sockets first: the ports must be known before the rings are built.
    socks = {}
    for name in SERVERS:
        if name == 'proxy' and PORT:
            sock = listen_fixed(PORT)
        else:
            sock = eventlet.listen(('127.0.0.1', 0), backlog=1024)
        # Accepted sockets inherit this: no Nagle delays between the
        # in-process servers or towards the client.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks[name] = sock
    ports = {name: sock.getsockname()[1] for name, sock in socks.items()}
    if TLS:
        # Accepted connections do their handshake in their own greenthread
        # (eventlet's accept() defers it), so a slow client cannot stall
        # the accept loop.
        from eventlet.green import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(TLS_CERT, TLS_KEY)
        socks['proxy'] = ctx.wrap_socket(socks['proxy'], server_side=True)

    # 2. swift.conf, then make Swift (re)read it: hash prefix/suffix,
    # constraints and storage policies.
    write_file(SWIFT_CONF, SWIFT_CONF_TEXT)
    utils.validate_hash_conf()
    from swift.common import constraints, storage_policy
    constraints.reload_constraints()
    storage_policy.reload_storage_policies()

    for name in ('object', 'container', 'account'):
        build_ring(name, ports[name])

    # Tests need objects to stay in the page cache after a PUT, but
    # DiskFileWriter drops the written range unconditionally
    # (keep_cache_size only governs reads).  No-op it for this server.
    import swift.obj.diskfile
    swift.obj.diskfile.drop_buffer_cache = lambda fd, offset, length: None

    # 3. Load the WSGI apps (swift.common.wsgi.loadapp also lets the proxy
    # check/adjust its pipeline, as in a real deployment).
    from swift.common.wsgi import loadapp
    log_level = 'DEBUG' if DEBUG else 'WARNING'
    apps = {}
    for name in SERVERS:
        conf_path = os.path.join(DIR, name + '-server.conf')
        write_file(conf_path, COMMON_DEFAULTS.format(
            dir=DIR, port=ports[name], name=name + '-server',
            log_level=log_level) + SERVER_CONFS[name])
        apps[name] = loadapp(conf_path)

    # 4. Workers: fork the extra processes now, with everything loaded, so
    # they share the sockets and start at once.  The child keeps the hub it
    # inherits (poll: no kernel state; the proxy's Watchdog greenthread is
    # already scheduled in it), as it keeps everything else.
    parent = os.getpid()
    children = []
    if WORKERS > 1:
        MEMCACHE.share()
        sys.stderr.flush()
        for worker in range(1, WORKERS):
            pid = os.fork()
            if pid == 0:
                try:
                    random.seed()  # do not shuffle nodes like the others
                    watch(serve(socks, apps), parent=parent)
                except SystemExit as e:
                    sys.stderr.write('%s\n' % e)
                except BaseException:
                    traceback.print_exc()
                finally:  # never go on with the parent's code
                    sys.stderr.flush()
                    os._exit(1)
            children.append(pid)

    servers = serve(socks, apps)

    # 5. Readiness: the sockets already listen, so clients may connect now.
    write_file(os.path.join(DIR, 'port'), '%d\n' % ports['proxy'])
    sys.stderr.write('%s swift-launcher: serving S3 on %s://127.0.0.1:%d '
                     '(object %d, container %d, account %d), pid %d%s\n' % (
                         time.strftime('%Y-%m-%d %H:%M:%S'),
                         'https' if TLS else 'http', ports['proxy'],
                         ports['object'], ports['container'],
                         ports['account'], parent,
                         ', workers %s' % ' '.join(map(str, children))
                         if children else ''))
    sys.stderr.flush()
    try:
        watch(servers, children=children)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def listen_fixed(port):
    """A listening socket on 127.0.0.1:port, retried while it is in use.

    SO_REUSEADDR (eventlet's default) lets it bind while connections of a
    previous server on the port linger in TIME_WAIT; eventlet would also
    set SO_REUSEPORT for a fixed port, which would let two servers share
    it silently (the kernel spreads connections over both), so it is off.
    Still EADDRINUSE: something listens there or a client's connection
    holds the port (an ephemeral port can be any port); wait for it.
    """
    import errno
    deadline = time.monotonic() + BIND_TIMEOUT
    while True:
        try:
            return eventlet.listen(('127.0.0.1', port), backlog=1024,
                                   reuse_port=False)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                sys.exit('swift-launcher: cannot listen on 127.0.0.1:%d: %s'
                         % (port, e.strerror))
        time.sleep(0.1)


def serve(socks, apps):
    """Spawns the four servers; returns their greenthreads."""
    from swift.common.http_protocol import SwiftHttpProtocol
    from eventlet.green import ssl

    class TLSProtocol(SwiftHttpProtocol):
        # A client that rejects the certificate (or speaks plain HTTP to
        # the HTTPS port) is worth a line in the log, not a traceback from
        # the hub.  The connection is closed (finish()) all the same.
        def handle(self):
            try:
                super().handle()
            except ssl.SSLError as e:
                self.close_connection = 1
                sys.stderr.write('%s swift-launcher: TLS with %s:%s: %s\n' % (
                    time.strftime('%Y-%m-%d %H:%M:%S'),
                    self.client_address[0], self.client_address[1], e))

    # Same settings as swift.common.wsgi.run_server(), which would reload
    # the app itself and cannot share one process.
    return [eventlet.spawn(
        eventlet.wsgi.server, socks[name], apps[name],
        log=None if DEBUG else utils.NullLogger(),
        custom_pool=eventlet.GreenPool(1024),
        protocol=TLSProtocol if TLS and name == 'proxy' else SwiftHttpProtocol,
        socket_timeout=60,
        # The AWS SDKs need "ETag", not eventlet's "Etag".
        capitalize_response_headers=False) for name in SERVERS]


def watch(servers, children=(), parent=None):
    """Serves until something is wrong; never returns normally."""
    me = 'swift-launcher[%d]' % os.getpid()
    # Do not outlive DIR: if it is deleted without "s3-server stop", exit
    # instead of lingering as an orphan serving from a deleted directory.
    # A worker (parent set) does not outlive the first process either.
    while True:
        eventlet.sleep(2)
        if not os.path.isdir(DIR):
            sys.stderr.write('%s: %s vanished, exiting\n' % (me, DIR))
            os._exit(0)
        if parent is not None and os.getppid() != parent:
            sys.stderr.write('%s: pid %d is gone, exiting\n' % (me, parent))
            os._exit(0)
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                sys.exit('%s: worker pid %d died (wait status %d)'
                         % (me, pid, status))
        for gt in servers:
            if gt.dead:
                gt.wait()  # re-raises the server's exception
                sys.exit('%s: a server stopped unexpectedly' % me)


if __name__ == '__main__':
    main()
