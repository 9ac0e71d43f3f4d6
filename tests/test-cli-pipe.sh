#!/bin/bash
# Proves s3bd pipe: from an S3 prefix (and from an index) in one command,
# --channel NAME makes ROOT/input/data/NAME_0, a FIFO holding the objects
# back to back in index order, byte for byte; inputdataconfig.json gets
# the channel as Pipe, merged with the others; --stop stops it.
. "$(dirname "$0")/lib.sh"
need_plugin
command -v jq >/dev/null || skip "jq is needed"
start_server
s3 mb s3://pipes
{
  for i in $(seq -w 0 29); do echo "$(( 10#$i * 4099 % 200000 + 1 )) k$((10#$i % 3))/o$i"; done
  echo "3000000 big"
} > "$TMP/spec"
upload s3://pipes/ds/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://pipes/ds/ -o "$TMP/ds.s3bd"
"$S3BD_MKIMAGE" --dump "$TMP/ds.s3bd" > "$TMP/dump"
# The stream: objects in index order (FIRST-BLOCK, then path), back to back.
sort -t "$(printf '\t')" -k5,5n -k1,1 "$TMP/dump" | while IFS=$'\t' read -r _ uri _ size _; do
  "$S3BD_TESTDATA" gen "${uri#s3://*/}" "$size"
done > "$TMP/expected"

S3BD=$S3BD_SOURCE_DIR/cli/s3bd
export S3BD_RUN_DIR=$TMP/run S3BD_PLUGIN=$S3BD_PLUGIN_SO
env_opts=()
for e in $(plugin_env); do env_opts+=(--nbdkit-env "$e"); done
sm=$TMP/sm
mkdir -p "$sm/input/config"
echo '{"val": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}' \
  > "$sm/input/config/inputdataconfig.json"
stop_all () {
  for c in train test; do "$S3BD" pipe --stop --channel $c >/dev/null 2>&1 || true; done
  cleanup
}
trap stop_all EXIT

read_fifo () {  # PATH OUT: waits for the FIFO as PipeModeDataset does
  for _ in $(seq 300); do [ -p "$1" ] && break; sleep 0.1; done
  [ -p "$1" ] && timeout 60 cat "$1" > "$2"
}

check "s3bd pipe s3://pipes/ds/ --channel train starts" \
  "$S3BD" pipe "${env_opts[@]}" --endpoint "$S3BD_TEST_ENDPOINT" --path-style \
  --sagemaker-root "$sm" --channel train --epochs 1 s3://pipes/ds/
check "train_0 is a FIFO and reads to EOF" read_fifo "$sm/input/data/train_0" "$TMP/train_0"
check "train_0 holds the objects back to back in index order" cmp "$TMP/expected" "$TMP/train_0"
sleep 1.5  # a stats write after the epoch
check "the JSON stats carry the pipe's epoch counters" \
  jq -e '(.pipe | test("pipe reader 0: 1 epochs done")) and .gets > 0 and (.mb_per_s|type=="number")' \
  "$TMP/run/pipe-train/stats.json"
check "s3bd pipe --index --channel test starts" \
  "$S3BD" pipe "${env_opts[@]}" --endpoint "$S3BD_TEST_ENDPOINT" --path-style \
  --sagemaker-root "$sm" --channel test --epochs 1 --index "$TMP/ds.s3bd"
check "test_0 holds the same bytes" bash -c 'read_fifo () { for _ in $(seq 300); do [ -p "$1" ] && break; sleep 0.1; done; [ -p "$1" ] && timeout 60 cat "$1" > "$2"; }; read_fifo "$1" "$2" && cmp "$3" "$2"' \
  _ "$sm/input/data/test_0" "$TMP/test_0" "$TMP/expected"
cat "$sm/input/config/inputdataconfig.json"
check "inputdataconfig.json: train and test as Pipe, val kept" \
  jq -e '.train.TrainingInputMode == "Pipe" and .test.TrainingInputMode == "Pipe"
         and .train.RecordWrapperType == "None" and .val.TrainingInputMode == "File"' \
  "$sm/input/config/inputdataconfig.json"
expect_error "a second pipe on a running channel is refused" "already running" \
  "$S3BD" pipe --sagemaker-root "$sm" --channel train --index "$TMP/ds.s3bd"
pid=$(cat "$TMP/run/pipe-train/nbdkit.pid")
check "s3bd pipe --stop stops the channel" "$S3BD" pipe --stop --channel train
check "its nbdkit has exited" bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
check "the log is kept" test -s "$TMP/run/last-pipe-train.log"
"$S3BD" pipe --stop --channel test
expect_error "a wrong bucket fails s3bd pipe" "no such bucket" \
  "$S3BD" pipe "${env_opts[@]}" --endpoint "$S3BD_TEST_ENDPOINT" --path-style \
  --sagemaker-root "$sm" --channel train s3://nope/ds/
check "nothing left running after the failure" test ! -e "$TMP/run/pipe-train"
expect_error "stats-format= other than text or json is refused" "stats-format: yaml: must be text or json" \
  env $(plugin_env) nbdkit -U - "$S3BD_PLUGIN_SO" index="$TMP/ds.s3bd" stats-format=yaml --run true
finish
