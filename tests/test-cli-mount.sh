#!/bin/bash
# Proves the user's command: s3bd mount s3://BUCKET/PREFIX/ DIR (the
# image built at start-up) and --index mount and read back every file as
# its object; a wrong endpoint, a wrong secret and a missing bucket each
# fail the mount with the error, a non-zero exit and nothing left mounted
# or running; s3bd status gives JSON with rates; s3bd umount undoes it;
# mount -t s3bd works through /sbin/mount.s3bd; --channel writes and
# merges inputdataconfig.json.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v jq >/dev/null || skip "jq is needed"
[ "$(id -u)" -eq 0 ] || skip "root is needed to attach and mount"
command -v nbdfuse >/dev/null || skip "nbdfuse is needed"
[ -e /dev/fuse ] || skip "/dev/fuse is needed"
start_server
s3 mb s3://cli
{
  for i in $(seq -w 0 39); do echo "$(( 10#$i * 7919 % 300000 + 1 )) d$((10#$i % 4))/f$i.bin"; done
  echo "5000000 big.bin"
  echo "0 empty"
} > "$TMP/spec"
upload s3://cli/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://cli/ds/ -o "$TMP/ds.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/ds.s3bd" > "$TMP/dump"

S3BD=$S3BD_SOURCE_DIR/cli/s3bd
export S3BD_RUN_DIR=$TMP/run S3BD_PLUGIN=$S3BD_PLUGIN_SO
env_opts=(--via fuse)
for e in $(plugin_env); do env_opts+=(--nbdkit-env "$e"); done
mkdir "$TMP/m1" "$TMP/m2" "$TMP/m3"
helper_installed=false
undo () {
  for m in "$TMP"/m1 "$TMP"/m2 "$TMP"/m3 "$TMP"/sm/input/data/* "$TMP"/smh/input/data/*; do "$S3BD" umount "$m" >/dev/null 2>&1 || true; done
  $helper_installed && rm -f /sbin/mount.s3bd
  cleanup
}
trap undo EXIT
s3opts=(--endpoint "$S3BD_TEST_ENDPOINT" --path-style)

mount_or_skip () {  # what the attach failure says about this machine
  if ! "$S3BD" mount "$@" 2> "$TMP/mount.err"; then
    cat "$TMP/mount.err" >&2
    grep -q "losetup failed\|nbdfuse did not start" "$TMP/mount.err" && skip "cannot attach a FUSE-backed loop device here"
    return 1
  fi
  cat "$TMP/mount.err"
}

check "s3bd mount s3://cli/ds/ (built at start-up) mounts" \
  mount_or_skip "${env_opts[@]}" "${s3opts[@]}" --cache-size 64M s3://cli/ds/ "$TMP/m1"
check "mount printed the log path" grep -q "log: .*nbdkit.log" "$TMP/mount.err"
check "every file reads back as its object (s3:// prefix)" "$S3BD_TESTDATA" verify "$TMP/m1" < "$TMP/dump"
check "s3bd mount --index mounts" \
  mount_or_skip "${env_opts[@]}" "${s3opts[@]}" --index "$TMP/ds.s3bd" "$TMP/m2"
check "every file reads back as its object (--index)" "$S3BD_TESTDATA" verify "$TMP/m2" < "$TMP/dump"

# status: two samples of the stats file while a reader runs.
( for _ in 1 2 3; do cat "$TMP"/m1/big.bin > /dev/null; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; done ) &
reader=$!
"$S3BD" status --json "$TMP/m1" > "$TMP/status.json"
wait $reader
cat "$TMP/status.json"
check "s3bd status --json is JSON with rates" \
  jq -e '(.mb_per_s|type=="number") and (.gets_per_s|type=="number") and (.errors==0) and .nbdkit_running and (.counters.gets > 0)' "$TMP/status.json"
st=$(cat "$(grep -l "$TMP/m1" "$TMP"/run/*/mountpoint | xargs dirname)/stats")
check "the plugin's stats file is JSON (stats-format=json) with counters and rates" \
  jq -e '(.gets|type=="number") and (.mb_per_s|type=="number") and (.gets_per_s|type=="number") and (.line|startswith("stats: GETs"))' <<<"$st"
check "s3bd status (all mounts, text) names both" \
  bash -c '"$0" status > "$1" && grep -q "MB/s" "$1" && [ "$(grep -c "GETs/s" "$1")" -eq 2 ]' "$S3BD" "$TMP/status.txt"

pids=$(cat "$TMP"/run/*/nbdkit.pid)
check "s3bd umount unmounts the first" "$S3BD" umount "$TMP/m1"
check "s3bd umount unmounts the second" "$S3BD" umount "$TMP/m2"
gone () { for p in $pids; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "nothing mounted or running after umount" \
  bash -c '! mountpoint -q "$1" && ! mountpoint -q "$2" && [ -z "$(find "$3" -mindepth 1 -type d)" ]' _ "$TMP/m1" "$TMP/m2" "$TMP/run"
check "nbdkit has exited" gone

# Wrong endpoint, wrong secret, missing bucket: the mount fails, says why.
nothing_left () {
  ! mountpoint -q "$TMP/m3" && [ -z "$(find "$TMP/run" -mindepth 1 -type d)" ] \
    && ! pgrep -f "unix $TMP/run/" >/dev/null
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_error "a wrong endpoint fails the mount" "check.*(connect|refused|reach)" \
  "$S3BD" mount "${env_opts[@]}" --endpoint "http://127.0.0.1:$port" --path-style --timeout 3 --index "$TMP/ds.s3bd" "$TMP/m3"
check "nothing left after the wrong endpoint" nothing_left
# An endpoint that accepts connections and never answers: the check's
# deadline (--timeout) ends the wait, and the mount fails.
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64); print(s.getsockname()[1]); sys.stdout.flush()
conns = []
while True: conns.append(s.accept())' > "$TMP/silent.port" &
silent=$!
for _ in $(seq 50); do [ -s "$TMP/silent.port" ] && break; sleep 0.1; done
expect_error "an endpoint that never answers fails the mount" "check.*(timed out|timeout|deadline|stalled|attempts)" \
  "$S3BD" mount "${env_opts[@]}" --endpoint "http://127.0.0.1:$(cat "$TMP/silent.port")" --path-style --timeout 3 \
  --index "$TMP/ds.s3bd" "$TMP/m3"
kill "$silent" 2>/dev/null || true
wait "$silent" 2>/dev/null || true
check "nothing left after the silent endpoint" nothing_left
expect_error "a wrong secret fails the mount" "authentication|SignatureDoesNotMatch|credentials" \
  env AWS_SECRET_ACCESS_KEY=wrong "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" s3://cli/ds/ "$TMP/m3"
check "nothing left after the wrong secret" nothing_left
expect_error "a missing bucket fails the mount" "no such bucket" \
  "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" s3://no-such-bucket/ds/ "$TMP/m3"
check "nothing left after the missing bucket" nothing_left
expect_error "a missing mount point is named" "m9: no such directory" \
  "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" s3://cli/ds/ "$TMP/m9"
expect_error "a bare path is not taken for a prefix" "not an s3://bucket/prefix/ URI" \
  "$S3BD" mount "${env_opts[@]}" "$TMP/ds.s3bd" "$TMP/m3"

# mount -t s3bd: mount(8) runs /sbin/mount.s3bd SPEC DIR -o OPTS.  The
# package test installs one too: one at a time.
lock_system_files
if [ -e /sbin/mount.s3bd ]; then
  echo "note: /sbin/mount.s3bd exists already; mount -t s3bd not tested" >&2
else
  printf '#!/bin/sh\nS3BD_RUN_DIR=%s S3BD_PLUGIN=%s S3BD_NBDKIT_ENV="%s" exec %s "$@"\n' \
    "$S3BD_RUN_DIR" "$S3BD_PLUGIN" "$(plugin_env | tr '\n' ' ')" \
    "$S3BD_SOURCE_DIR/cli/mount.s3bd" > /sbin/mount.s3bd
  chmod 755 /sbin/mount.s3bd
  helper_installed=true
  check "mount -t s3bd s3://cli/ds/ DIR -o ro,cache-size=64M,... mounts" \
    mount -t s3bd s3://cli/ds/ "$TMP/m3" -o "ro,cache-size=64M,endpoint=$S3BD_TEST_ENDPOINT,path-style,via=fuse"
  check "every file reads back as its object (mount -t s3bd)" "$S3BD_TESTDATA" verify "$TMP/m3" < "$TMP/dump"
  expect_error "mount -t s3bd -o rw is refused" "read-only" \
    mount -t s3bd s3://cli/ds/ "$TMP/m1" -o rw
  check "s3bd umount undoes mount -t s3bd" "$S3BD" umount "$TMP/m3"
  rm -f /sbin/mount.s3bd
  helper_installed=false
fi
unlock_system_files

# --hydrate --wait: mounted once the copy is complete; status shows it.
check "s3bd mount --hydrate --wait --channel hy mounts once the copy is complete" \
  "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" --hydrate "$TMP/copy.img" --wait \
  --sagemaker-root "$TMP/smh" --channel hy s3://cli/ds/
check "the hydrated channel is File mode in inputdataconfig.json" \
  jq -e '.hy.TrainingInputMode == "File" and .hy.S3DistributionType == "FullyReplicated"' \
  "$TMP/smh/input/config/inputdataconfig.json"
mv "$TMP/m1" "$TMP/m1.unused" && ln -s "$TMP/smh/input/data/hy" "$TMP/m1"
"$S3BD" status --json "$TMP/m1" > "$TMP/hstatus.json"
cat "$TMP/hstatus.json"
check "status --json reports the copy complete at 100%" \
  jq -e '.hydrate.complete and .hydrate.percent == 100 and .hydrate.total_bytes > 0' "$TMP/hstatus.json"
check "every file reads back as its object (hydrated)" "$S3BD_TESTDATA" verify "$TMP/m1" < "$TMP/dump"
"$S3BD" umount "$TMP/m1"
rm "$TMP/m1" && mv "$TMP/m1.unused" "$TMP/m1"

# --channel: /opt/ml layout under a temporary root, merged config.
sm=$TMP/sm
mkdir -p "$sm/input/config"
echo '{"other": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}' \
  > "$sm/input/config/inputdataconfig.json"
check "s3bd mount --channel train mounts /opt/ml/input/data/train (under the root)" \
  "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" --sagemaker-root "$sm" --channel train --shard 0/1 s3://cli/ds/
check "the channel reads back byte-exact" "$S3BD_TESTDATA" verify "$sm/input/data/train" < "$TMP/dump"
cat "$sm/input/config/inputdataconfig.json"
check "inputdataconfig.json has train (FastFile, ShardedByS3Key) and keeps other" \
  jq -e '.train.TrainingInputMode == "FastFile" and .train.S3DistributionType == "ShardedByS3Key"
         and .train.RecordWrapperType == "None" and .other.TrainingInputMode == "File"' \
  "$sm/input/config/inputdataconfig.json"
check "no temporary file is left beside it" test "$(ls -A "$sm/input/config")" = inputdataconfig.json
"$S3BD" umount "$sm/input/data/train"
echo 'not json' > "$TMP/bad.json"
mkdir -p "$TMP/sm2/input/config"; cp "$TMP/bad.json" "$TMP/sm2/input/config/inputdataconfig.json"
expect_error "a broken inputdataconfig.json is named and not changed" "inputdataconfig.json: not a JSON object" \
  "$S3BD" mount "${env_opts[@]}" "${s3opts[@]}" --sagemaker-root "$TMP/sm2" --channel val s3://cli/ds/
check "the broken file is unchanged" cmp "$TMP/bad.json" "$TMP/sm2/input/config/inputdataconfig.json"
"$S3BD" umount "$TMP/sm2/input/data/val" >/dev/null 2>&1 || true
finish
