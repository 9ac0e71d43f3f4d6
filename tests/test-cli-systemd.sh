#!/bin/bash
# Proves s3bd@.service: a dataset described by /etc/s3bd/NAME.conf is
# mounted by systemctl start s3bd@NAME (every file byte-exact) and gone
# after systemctl stop.  Needs a running systemd (skips otherwise).
. "$(dirname "$0")/lib.sh"
need_plugin
[ "$(id -u)" -eq 0 ] || skip "root is needed"
[ -d /run/systemd/system ] || skip "no systemd is running here"
command -v systemctl >/dev/null || skip "systemctl is needed"
start_server
s3 mb s3://unit
printf '%s\n' "100000 a/one" "2000000 b/two" "0 empty" > "$TMP/spec"
upload s3://unit/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://unit/ds/ -o "$TMP/ds.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/ds.s3bd" > "$TMP/dump"
name=test-$$
unit=/run/systemd/system/s3bd@.service
[ -e "$unit" ] && skip "$unit exists already"
sed "s#/usr/bin/s3bd#$S3BD_SOURCE_DIR/cli/s3bd#g; s#/etc/s3bd/#$TMP/etc/#g" \
  "$S3BD_SOURCE_DIR/cli/s3bd@.service" > "$unit"
mkdir -p "$TMP/etc"
cat > "$TMP/etc/$name.conf" <<CONF
SOURCE=s3://unit/ds/
DIR=$TMP/mnt
OPTIONS=--endpoint $S3BD_TEST_ENDPOINT --path-style --via fuse
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
S3BD_PLUGIN=$S3BD_PLUGIN_SO
AWS_EC2_METADATA_DISABLED=true
CONF
undo () { systemctl stop "s3bd@$name" 2>/dev/null || true; rm -f "$unit"; systemctl daemon-reload || true; cleanup; }
trap undo EXIT
systemctl daemon-reload
check "systemctl start s3bd@$name mounts the dataset" systemctl start "s3bd@$name"
check "every file reads back as its object" "$S3BD_TESTDATA" verify "$TMP/mnt" < "$TMP/dump"
check "systemctl stop unmounts it" systemctl stop "s3bd@$name"
check "nothing mounted after stop" bash -c '! mountpoint -q "$1"' _ "$TMP/mnt"
finish
