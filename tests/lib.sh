# s3bd integration tests: shared shell functions.  Source it first thing.
#
# Every test starts its own local S3 server (scripts/s3-server, about half a
# second) so tests can run in parallel and never see each other's data.
# A test that cannot run its prerequisite exits 77 (skip), never 0.

set -euo pipefail
export LC_ALL=C.UTF-8
# scripts/install-nbdkit puts a fixed nbdkit (>= 1.33.10) in /usr/local:
# it comes before Debian 12's, which aborts when a client hangs up.
export PATH=/usr/local/bin:$PATH
export AWS_EC2_METADATA_DISABLED=true
# Never pick up the developer's own AWS files.
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION
# No credential source but the ones a test sets up itself.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
unset AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN AWS_ROLE_SESSION_NAME
unset AWS_ENDPOINT_URL_STS AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_AUTHORIZATION_TOKEN
unset AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9
# Plain HTTP unless a test asks for TLS itself (S3BD_S3_TLS=1 start_server).
unset S3BD_S3_TLS

: "${S3BD_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${S3BD_BUILD_DIR:=$S3BD_SOURCE_DIR/build}"
S3BD_S3=$S3BD_BUILD_DIR/mkimage/s3bd-s3
S3BD_TESTDATA=$S3BD_BUILD_DIR/tests/s3bd-testdata

t_passed=0
t_failed=0
TMP=$(mktemp -d /tmp/s3bd-test.XXXXXX)

skip () { echo "SKIP: $*" >&2; exit 77; }

cleanup () {
  if declare -F stop_nbdkit >/dev/null; then stop_nbdkit; fi
  if [ -n "${S3BD_LOCK_PID:-}" ]; then kill "$S3BD_LOCK_PID" 2>/dev/null || true; fi
  if [ -n "${S3BD_TEST_SERVER_DIR:-}" ]; then
    "$S3BD_SOURCE_DIR/scripts/s3-server" stop "$S3BD_TEST_SERVER_DIR" || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# lock_system_files: for the part of a test that changes files outside
# $TMP which another test changes too (/sbin/mount.s3bd, the installed
# package): waits for the other to finish, across checkouts and ctest
# runs (tests/CMakeLists.txt also gives them one RESOURCE_LOCK), and
# holds the lock until unlock_system_files or the test's exit.  A process
# of its own holds the lock, so that nbdkit and the other programs a test
# starts never inherit it.
lock_system_files () {
  local lock=/run/lock/s3bd-tests-system-files.lock got=
  [ -d /run/lock ] || lock=/tmp/s3bd-tests-system-files.lock
  mkfifo "$TMP/lock.fifo"
  # At most 15 min: a lock left by a killed test goes by itself.
  ( exec 9>>"$lock"
    if flock -w 600 9; then echo locked > "$TMP/lock.fifo"; exec sleep 900; fi
    echo busy > "$TMP/lock.fifo" ) &
  S3BD_LOCK_PID=$!
  read -r got < "$TMP/lock.fifo"
  rm -f "$TMP/lock.fifo"
  [ "$got" = locked ] || { echo "FAIL: $lock still held after 10 min" >&2; exit 1; }
}
unlock_system_files () {
  [ -n "${S3BD_LOCK_PID:-}" ] || return 0
  kill "$S3BD_LOCK_PID" 2>/dev/null || true
  wait "$S3BD_LOCK_PID" 2>/dev/null || true
  S3BD_LOCK_PID=
}

# Starts a local S3 server and exports its endpoint and credentials.
# scripts/s3-server's options pass through the environment: a test that
# runs "S3BD_S3_TLS=1 start_server" gets HTTPS and S3BD_TEST_CA.
start_server () {
  /usr/bin/python3 -c 'import swift, botocore' 2>/dev/null \
    || skip "Debian's python3-swift and python3-botocore are needed (scripts/install-deps)"
  [ -x "$S3BD_S3" ] || skip "$S3BD_S3 not built"
  local env
  env=$("$S3BD_SOURCE_DIR/scripts/s3-server" start "$TMP/server") \
    || { echo "FAIL: the local S3 server did not start" >&2; exit 1; }
  eval "$env"
}

# s3bd-s3 against the local server.
s3 () { "$S3BD_S3" --endpoint "$S3BD_TEST_ENDPOINT" --path-style "$@"; }

# Uploads objects listed in a spec file ("SIZE KEY" lines) under
# s3://BUCKET/PREFIX with the test pattern as contents.
upload () { "$S3BD_TESTDATA" upload --endpoint "$S3BD_TEST_ENDPOINT" "$@"; }

# check DESCRIPTION COMMAND...: runs the command, counts pass or fail.
check () {
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    t_passed=$((t_passed + 1))
  else
    echo "FAIL: $what" >&2
    t_failed=$((t_failed + 1))
  fi
}

# expect_error DESCRIPTION PATTERN COMMAND...: the command must fail and
# print a message matching PATTERN (grep -E) on stderr.
expect_error () {
  local what=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1 >/dev/null); then
    echo "FAIL: $what: succeeded, expected an error" >&2
    t_failed=$((t_failed + 1))
  elif grep -Eq -- "$pattern" <<<"$out"; then
    echo "ok: $what: $out"
    t_passed=$((t_passed + 1))
  else
    echo "FAIL: $what: message '$out' does not match '$pattern'" >&2
    t_failed=$((t_failed + 1))
  fi
}

finish () {
  echo "$t_passed passed, $t_failed failed"
  [ "$t_failed" -eq 0 ] && [ "$t_passed" -gt 0 ]
}

# ---- The plugin ----
S3BD_PLUGIN_SO=$S3BD_BUILD_DIR/plugin/nbdkit-s3bd-plugin.so
S3BD_MKIMAGE=$S3BD_BUILD_DIR/mkimage/s3bd-mkimage

need_plugin () {
  command -v nbdkit >/dev/null || skip "nbdkit is needed (scripts/install-deps)"
  [ -f "$S3BD_PLUGIN_SO" ] || skip "$S3BD_PLUGIN_SO not built"
}

# need_fixed_nbdkit: an nbdkit that survives clients hanging up.  Not a
# skip: scripts/install-deps provides one, and the plugin is documented
# to need it.
need_fixed_nbdkit () {
  "$S3BD_SOURCE_DIR/scripts/install-nbdkit" --check >/dev/null || {
    echo "FAIL: nbdkit $(nbdkit --version | awk '{ print $2 }') on PATH is older than 1.33.10 (scripts/install-nbdkit)" >&2
    exit 1
  }
}

# Whether the build under test has the sanitizers (ASan, UBSan).
sanitized_build () {
  grep -q "S3BD_SANITIZE:BOOL=ON" "$S3BD_BUILD_DIR/CMakeCache.txt" 2>/dev/null
}

# nbdkit cannot load a plugin built with the sanitizers unless their
# runtimes come first: preload them for such a build.
plugin_env () {
  if sanitized_build; then
    echo "LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    echo "ASAN_OPTIONS=detect_leaks=0"
  fi
}

# start_nbdkit SOCKET INDEX [PARAM=VALUE...]: serves the index on a Unix
# socket in the background, logging to $TMP/nbdkit.log.  With SOCKET
# "tcp" it listens on 127.0.0.1 at a free port instead, and sets
# NBDKIT_PORT (for clients that speak only TCP, such as nbd-client in a
# qemu guest).  INDEX may be source=s3://BUCKET/PREFIX/ instead: the
# plugin builds the index.  nbdkit runs NBDKIT_THREADS worker threads
# per connection (default 2): the tests run up to 32 clients, and
# docs/nbdkit-s3bd-plugin.md ("Memory") asks for connections x threads
# <= 64.
start_nbdkit () {
  local sock=$1 index=$2 listen
  shift 2
  case $index in source=*) ;; *) index="index=$index" ;; esac
  if [ "$sock" = tcp ]; then
    # The kernel picks a free port; another program could take it before
    # nbdkit binds it, but then nbdkit fails loudly below.
    NBDKIT_PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    listen=(-i 127.0.0.1 -p "$NBDKIT_PORT")
  else
    # A socket left by an earlier server would look ready at once.
    rm -f "$sock"
    listen=(--unix "$sock")
  fi
  # nbdkit writes its pid file once it accepts connections.
  rm -f "$TMP/nbdkit.pid"
  env $(plugin_env) nbdkit -f --log=stderr -D s3bd.verbose=1 -v \
    --threads "${NBDKIT_THREADS:-2}" "${listen[@]}" -P "$TMP/nbdkit.pid" "$S3BD_PLUGIN_SO" "$index" \
    endpoint="$S3BD_TEST_ENDPOINT" path-style=true "$@" \
    > "$TMP/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  for _ in $(seq 600); do
    [ -s "$TMP/nbdkit.pid" ] && return 0
    kill -0 "$NBDKIT_PID" 2>/dev/null || { cat "$TMP/nbdkit.log" >&2; echo "FAIL: nbdkit did not start" >&2; exit 1; }
    sleep 0.1
  done
  tail -n 40 "$TMP/nbdkit.log" >&2
  echo "FAIL: nbdkit did not start in 60 s (its log's end above)" >&2
  exit 1
}

stop_nbdkit () {
  [ -n "${NBDKIT_PID:-}" ] || return 0
  kill "$NBDKIT_PID" 2>/dev/null || true
  # Under ASan (runtime preloaded), a library's exit-time destructor can
  # deadlock in glibc's locale lock after the plugin has finished: give
  # it 10 s, then make sure it is gone.
  for _ in $(seq 100); do kill -0 "$NBDKIT_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$NBDKIT_PID" 2>/dev/null || true
  wait "$NBDKIT_PID" 2>/dev/null || true
  NBDKIT_PID=
}

# The bytes the device must hold: the materialised index filled with every
# object's pattern at its recorded blocks.  make_expected INDEX OUT
make_expected () {
  "$S3BD_MKIMAGE" --materialize "$1" -o "$2"
  "$S3BD_MKIMAGE" --dump "$1" > "$2.dump"
  "$S3BD_TESTDATA" fill "$2" < "$2.dump" >/dev/null
}
