#!/bin/bash
# Proves the Debian package as a user without the clone gets it: cpack
# builds s3bd_VERSION_ARCH.deb, apt-get installs it, and then, with no
# path into the clone or the build (PATH of the system, run from /):
# nbdkit finds the plugin by name (--dump-plugin shows s3bd_version),
# man finds nbdkit-s3bd-plugin(1) and s3bd(1), every command prints
# "NAME VERSION", s3bd mount s3://BUCKET/PREFIX/ DIR with the endpoint
# from AWS_ENDPOINT_URL reads every file byte-exact and s3bd umount
# undoes it, and so does mount -t s3bd through the installed
# /sbin/mount.s3bd; a wrong endpoint fails the mount with the error; apt-get
# remove leaves none of the package's files.
#
# It changes the system (the package's files in /usr and nbdkit's plugin
# directory), so it runs as root, holds lock_system_files (test-cli-mount
# puts its own /sbin/mount.s3bd there meanwhile) and removes the package
# whatever happens.  The other tests are not affected by the installed
# plugin or commands: they run the build tree's plugin by path and the
# clone's commands.
. "$(dirname "$0")/lib.sh"
need_plugin
[ "$(id -u)" -eq 0 ] || skip "root is needed to install a package"
for t in dpkg dpkg-deb apt-get cpack man; do
  command -v "$t" >/dev/null || skip "$t is needed (a Debian system)"
done
sanitized_build && skip "the package is made from the plain build (scripts/build), not the sanitizer one"
command -v nbdfuse >/dev/null || skip "nbdfuse is needed"
[ -e /dev/fuse ] || skip "/dev/fuse is needed"
dpkg-query -W -f='${db:Status-Status}' s3bd 2>/dev/null | grep -q '^installed$' &&
  skip "package s3bd is installed already: this test would remove it"

version=$(sed -n 's/^project (s3bd VERSION \([0-9.]*\).*/\1/p' "$S3BD_SOURCE_DIR/CMakeLists.txt")
mkdir "$TMP/pkg"
if ! (cd "$S3BD_BUILD_DIR" && cpack -G DEB -B "$TMP/pkg") > "$TMP/cpack.log" 2>&1; then
  cat "$TMP/cpack.log" >&2
  echo "FAIL: cpack -G DEB" >&2
  exit 1
fi
deb=$(find "$TMP/pkg" -maxdepth 1 -name "s3bd_${version}_*.deb")
check "cpack wrote s3bd_${version}_ARCH.deb" test -f "$deb"
[ -f "$deb" ] || { finish; exit 1; }
dpkg-deb -f "$deb" Depends > "$TMP/depends"
check "it depends on the libraries it links (dpkg-shlibdeps)" grep -q "libcurl4.*libext2fs2" "$TMP/depends"
check "it does not depend on Debian's nbdkit" bash -c '! grep -Eq "(^|[ ,|])nbdkit([ ,(]|$)" "$0"' "$TMP/depends"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' > "$TMP/files"
for f in /usr/bin/s3bd /usr/sbin/mount.s3bd /usr/share/man/man1/s3bd.1 \
  /usr/lib/systemd/system/s3bd@.service "$(pkg-config --variable plugindir nbdkit)/nbdkit-s3bd-plugin.so"; do
  check "the package holds $f" grep -qxF "$f" "$TMP/files"
done

lock_system_files
while read -r f; do
  if [ -e "$f" ]; then skip "$f exists already and is not the package's: the test would overwrite and remove it"; fi
done < "$TMP/files"

mkdir "$TMP/mnt"
export S3BD_RUN_DIR=$TMP/run
installed=false
undo () {
  if $installed; then
    sys s3bd umount "$TMP/mnt" >/dev/null 2>&1 ||
      "$S3BD_SOURCE_DIR/cli/s3bd" umount "$TMP/mnt" >/dev/null 2>&1 || true
    dpkg --purge s3bd >/dev/null 2>&1 || true
  fi
  cleanup
}
trap undo EXIT
# The installed system's view: no clone or build path anywhere; nbdkit
# (scripts/install-nbdkit) in /usr/local/bin.
sys () {
  (cd / && env -u S3BD_BUILD_DIR -u S3BD_SOURCE_DIR -u S3BD_PLUGIN -u S3BD_CLI \
    PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@")
}

# Minimal Debian images exclude man pages from every package
# (/etc/dpkg/dpkg.cfg.d/excludes): include this one's.  Another apt-get
# may be running: wait for the lock.
installed=true
check "apt-get install ./s3bd_${version}_ARCH.deb" \
  bash -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=120 -o DPkg::Options::=--path-include=/usr/share/man/* "$0" > "$1" 2>&1 \
    || { cat "$1" >&2; exit 1; }' "$deb" "$TMP/apt.log"
check "s3bd is on PATH in /usr/bin" test "$(sys bash -c 'command -v s3bd')" = /usr/bin/s3bd
check "mount(8) finds /sbin/mount.s3bd" test -x /sbin/mount.s3bd

sys nbdkit s3bd --dump-plugin > "$TMP/dump-plugin" 2>&1 || true
check "nbdkit s3bd --dump-plugin (by name) shows s3bd_version=$version" \
  grep -qx "s3bd_version=$version" "$TMP/dump-plugin"
check "man -w nbdkit-s3bd-plugin finds the page" bash -c 'f=$(man -w nbdkit-s3bd-plugin) && [ -s "$f" ]'
check "man -w s3bd finds the page" bash -c 'f=$(man -w s3bd) && [ -s "$f" ]'
check "man -w s3bd-mkimage finds the page" bash -c 'f=$(man -w s3bd-mkimage) && [ -s "$f" ]'
check "man nbdkit-s3bd-plugin renders" bash -c 'MANWIDTH=80 man nbdkit-s3bd-plugin 2>/dev/null | grep -q "cache-size"'
for c in s3bd s3bd-s3 s3bd-mkimage s3bd-preload s3bd-attach s3bd-detach mount.s3bd; do
  check "$c --version prints '$c $version'" test "$(sys "$c" --version)" = "$c $version"
done
sys s3bd-detach --help > "$TMP/detach.help" 2>&1 || true
check "s3bd-detach --help is help, not a mount point" grep -q "undo s3bd-attach" "$TMP/detach.help"
sys s3bd-attach --help > "$TMP/attach.help" 2>&1 || true
check "s3bd-attach --help is its comment block only" \
  bash -c 'grep -q "^Options:" "$0" && ! grep -q "set -e" "$0"' "$TMP/attach.help"

# The data: mounted with the installed commands, the endpoint only in
# AWS_ENDPOINT_URL.
start_server
s3 mb s3://deb
{
  for i in $(seq -w 0 11); do echo "$(( 10#$i * 7919 % 200000 + 1 )) d$((10#$i % 3))/f$i.bin"; done
  echo "3000000 big.bin"
  echo "0 empty"
} > "$TMP/spec"
upload s3://deb/ds/ "$TMP/spec"
export AWS_ENDPOINT_URL=$S3BD_TEST_ENDPOINT
check "the installed s3bd-mkimage indexes the prefix (endpoint from AWS_ENDPOINT_URL)" \
  sys s3bd-mkimage -q s3://deb/ds/ -o "$TMP/ds.s3bd"
sys s3bd-mkimage --dump "$TMP/ds.s3bd" > "$TMP/dump"

if ! sys s3bd mount s3://deb/ds/ "$TMP/mnt" 2> "$TMP/mount.err"; then
  cat "$TMP/mount.err" >&2
  grep -q "losetup failed\|nbdfuse did not start" "$TMP/mount.err" && skip "cannot attach a FUSE-backed loop device here"
  check "s3bd mount s3://deb/ds/ DIR" false
else
  cat "$TMP/mount.err"
  check "s3bd mount s3://deb/ds/ DIR" true
fi
check "nbdkit runs the installed plugin (by name)" \
  bash -c 'grep -q -- " s3bd source=s3://deb/ds/" <(tr "\0" " " < /proc/$(cat "$0"/*/nbdkit.pid)/cmdline)' "$S3BD_RUN_DIR"
check "every file reads back as its object" "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/dump"
sys s3bd-s3 get s3://deb/ds/big.bin -o "$TMP/big.bin"
check "big.bin is byte for byte what s3bd-s3 get fetches" cmp "$TMP/big.bin" "$TMP/mnt/big.bin"
check "s3bd umount DIR" sys s3bd umount "$TMP/mnt"
check "nothing mounted after umount" bash -c '! mountpoint -q "$0" && [ -z "$(find "$1" -mindepth 1 -type d)" ]' \
  "$TMP/mnt" "$S3BD_RUN_DIR"

check "mount -t s3bd (the installed /sbin/mount.s3bd) mounts" \
  sys mount -t s3bd s3://deb/ds/ "$TMP/mnt" -o ro,cache-size=64M
check "every file reads back as its object (mount -t s3bd)" "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/dump"
check "s3bd umount undoes mount -t s3bd" sys s3bd umount "$TMP/mnt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_error "a wrong endpoint (AWS_ENDPOINT_URL) fails the mount with the error" \
  "s3://deb/ds/.*127.0.0.1.*$port.*(connect|refused|reach)" \
  sys env AWS_ENDPOINT_URL="http://127.0.0.1:$port" s3bd mount --timeout 3 s3://deb/ds/ "$TMP/mnt"
check "nothing mounted after the wrong endpoint" bash -c '! mountpoint -q "$0"' "$TMP/mnt"

check "apt-get remove -y s3bd" \
  bash -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=120 s3bd > "$0" 2>&1 \
    || { cat "$0" >&2; exit 1; }' "$TMP/apt-remove.log"
installed=false
left=$(while read -r f; do if [ -e "$f" ]; then echo "$f"; fi; done < "$TMP/files")
check "none of the package's files is left${left:+: $left}" test -z "$left"
dpkg --purge s3bd >/dev/null 2>&1 || true
finish
