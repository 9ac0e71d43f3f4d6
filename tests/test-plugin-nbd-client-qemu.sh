#!/bin/bash
# Proves the literal user path: nbd-client attaches the device nbdkit
# serves over TCP, the kernel mounts it read-only, and every file reads
# back as its object.  These machines have no nbd driver, so the client
# side runs in a Debian kernel booted in qemu (software emulation) from a
# busybox initramfs; the guest reaches nbdkit on the host's loopback at
# 10.0.2.2 through qemu's user network, prints its findings to a serial
# port and powers off.  The host checks the file count, every size and
# every file's SHA-256 against the source objects, and the whole device's
# SHA-256 against the expected image, read once through the page cache
# and once in 4 MiB direct reads, which the kernel splits at the plugin's
# 1 MiB maximum (max_sectors_kb, as s3bd-attach sets it).
. "$(dirname "$0")/lib.sh"
need_plugin
command -v qemu-system-x86_64 >/dev/null \
  || skip "qemu-system-x86_64 is needed (scripts/install-deps)"
# Can qemu start a machine here at all?  -S stops it before the first
# instruction; the monitor's "quit" then ends it.
echo quit | timeout 30 qemu-system-x86_64 -accel tcg -machine pc -m 64 \
  -nodefaults -no-user-config -display none -S -monitor stdio \
  > "$TMP/qemu-probe.log" 2>&1 \
  || { cat "$TMP/qemu-probe.log" >&2; skip "qemu-system-x86_64 cannot start a machine here"; }

# The kernel comes from scripts/install-deps (scripts/fetch-test-kernel):
# without it the test cannot say anything, and that is a failure.
kdir=${S3BD_TEST_KERNEL_DIR:-/var/cache/s3bd/test-kernel}
fail_setup () { echo "FAIL: $*" >&2; exit 1; }
[ -f "$kdir/modules.load" ] \
  || fail_setup "no test kernel in $kdir: run scripts/install-deps"
for p in busybox cpio nbd-client ldd; do
  command -v "$p" >/dev/null || fail_setup "$p is needed (scripts/install-deps)"
done
kernel=$kdir/vmlinux
[ -f "$kernel" ] || kernel=$kdir/vmlinuz

start_server
s3 mb s3://qemu
{
  echo "0 empty"
  echo "1 one-byte"
  echo "4097 docs/b4097"
  echo "3145733 data/three-mib-and-5.bin"
  echo "8388608 data/eight-mib.bin"
  for i in $(seq -w 0 19); do echo "$(( (10#$i * 7919 + 13) % 120000 )) small/f$i"; done
} > "$TMP/spec"
upload s3://qemu/train/ "$TMP/spec"
"$S3BD_MKIMAGE" -q --endpoint "$S3BD_TEST_ENDPOINT" --path-style s3://qemu/train/ -o "$TMP/train.s3bd"
make_expected "$TMP/train.s3bd" "$TMP/expected.img"

# What the guest must print, from the source objects: one line per file
# with its size, one with its SHA-256 (dump lines: PATH, URI, ETAG, SIZE,
# FIRST-BLOCK, BLOCKS), then the file count and the device's size and
# SHA-256.
while IFS=$'\t' read -r path uri _ size _ _; do
  sum=$("$S3BD_TESTDATA" gen "${uri#s3://*/}" "$size" | sha256sum | cut -d' ' -f1)
  echo "SIZE $size ./$path"
  echo "SHA256 $sum ./$path"
done < "$TMP/expected.img.dump" > "$TMP/expected-files"
nfiles=$(wc -l < "$TMP/expected.img.dump")
check "the index holds every uploaded object" test "$nfiles" -eq "$(wc -l < "$TMP/spec")"
echo "FILES $nfiles" > "$TMP/expected-device"
echo "DEVICE-SIZE $(stat -c %s "$TMP/expected.img")" >> "$TMP/expected-device"
echo "DEVICE-SHA256 $(sha256sum < "$TMP/expected.img" | cut -d' ' -f1)" >> "$TMP/expected-device"

start_nbdkit tcp "$TMP/train.s3bd" cache-size=64M
export_name=train

# ---- The initramfs: busybox, nbd-client with its libraries, modules ----
root=$TMP/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,mnt,modules,etc}
# copy_in FILE: FILE and every library ldd names (the dynamic loader
# included), at the same paths inside the initramfs.
copy_in () {
  local f
  for f in "$1" $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}
bb=$(command -v busybox)
copy_in "$bb"
# The init script's interpreter is /bin/busybox.
[ "$bb" = /bin/busybox ] || ln -s "$bb" "$root/bin/busybox"
copy_in "$(command -v nbd-client)"
cp "$kdir"/modules/*.ko "$root/modules/"
cp "$kdir/modules.load" "$root/modules.load"
printf 'PORT=%s\nEXPORT=%s\n' "$NBDKIT_PORT" "$export_name" > "$root/etc/s3bd-test.conf"
# PID 1.  Progress and errors go to the console (ttyS0), findings to
# ttyS1, a port nothing else writes to, so kernel messages cannot split
# a line.  Closing ttyS1 waits until its output has gone out; the DONE
# line shows that it all did.  A step that fails is reported and the
# rest still runs, so the guest always powers off; should init itself
# die, the kernel panics and qemu (-no-reboot, panic=-1) exits too.
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /etc/s3bd-test.conf
say () { echo "s3bd-guest: $*"; }
for m in $(cat /modules.load); do
  insmod "/modules/$m.ko" || say "insmod $m failed"
done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
say "attaching 10.0.2.2 port $PORT export $EXPORT"
nbd-client 10.0.2.2 "$PORT" /dev/nbd0 -N "$EXPORT" -b 4096 -readonly || say "nbd-client failed"
# As s3bd-attach does: the kernel cannot learn the plugin's 1 MiB maximum
# (set higher, the 4 MiB direct reads below get EIO).
say "max_sectors_kb was $(cat /sys/block/nbd0/queue/max_sectors_kb)"
echo 1024 > /sys/block/nbd0/queue/max_sectors_kb || say "max_sectors_kb failed"
mount -o ro -t ext4 /dev/nbd0 /mnt || say "mount failed"
{
  grep '^/dev/nbd0 ' /proc/mounts | sed 's/^/MOUNT /'
  cd /mnt
  echo "FILES $(find . -type f | wc -l)"
  find . -type f -exec stat -c 'SIZE %s %n' {} +
  find . -type f -exec sha256sum {} + | sed 's/^\([0-9a-f]*\)  /SHA256 \1 /'
  cd /
  touch /mnt/new 2>/dev/null && echo "WRITE allowed" || echo "WRITE refused"
  echo "DEVICE-SIZE $(blockdev --getsize64 /dev/nbd0)"
  echo "DEVICE-SHA256 $(sha256sum < /dev/nbd0 | cut -d' ' -f1)"
  # 4 MiB direct reads: the kernel splits them into 1 MiB requests.
  echo "DEVICE-SHA256-DIRECT $(dd if=/dev/nbd0 bs=4M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)"
  echo "DONE"
} > /dev/ttyS1 2>&1
umount /mnt
nbd-client -d /dev/nbd0 >/dev/null 2>&1
say "powering off"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$TMP/initramfs.cpio"

# ---- Boot ----
# 120 s is far above the few seconds a boot takes, but a loaded machine
# emulating a CPU is slow; the timeout only keeps a hang from lasting.
start=$(date +%s%N)
status=0
timeout 120 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$kernel" -initrd "$TMP/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1" \
  -serial "file:$TMP/console.log" -serial "file:$TMP/results.raw" \
  -nic user,model=virtio-net-pci \
  > "$TMP/qemu.log" 2>&1 || status=$?
echo "qemu ran $(( ($(date +%s%N) - start) / 1000000 )) ms, exit status $status"
# The tty turns each \n into \r\n on the way out.
tr -d '\r' < "$TMP/results.raw" > "$TMP/results" 2>/dev/null || true

check "qemu exited by itself (no timeout)" test "$status" -ne 124
check "the guest finished its checks" grep -qx DONE "$TMP/results"
check "/dev/nbd0 is mounted read-only" grep -Eq '^MOUNT /dev/nbd0 /mnt ext4 ro[ ,]' "$TMP/results"
check "writing to the mount is refused" grep -qx "WRITE refused" "$TMP/results"
# Every expected line must be there, and no other SIZE or SHA256 line.
check "the guest sees $nfiles files, each with its object's size" \
  diff <(grep '^SIZE ' "$TMP/expected-files" | sort) <(grep '^SIZE ' "$TMP/results" | sort)
check "every file's SHA-256 equals its object's" \
  diff <(grep '^SHA256 ' "$TMP/expected-files" | sort) <(grep '^SHA256 ' "$TMP/results" | sort)
check "file count, device size and whole-device SHA-256 equal the expected image's" \
  diff "$TMP/expected-device" <(grep -E '^(FILES|DEVICE-SIZE|DEVICE-SHA256) ' "$TMP/results")
check "the device read with 4 MiB direct reads (max_sectors_kb=1024) equals the expected image" \
  grep -qx "DEVICE-SHA256-DIRECT $(sha256sum < "$TMP/expected.img" | cut -d' ' -f1)" "$TMP/results"
check "nbdkit refused no request as too large" \
  bash -c '! grep -q "over the maximum block size" "$1"' _ "$TMP/nbdkit.log"
if [ "$t_failed" -ne 0 ]; then
  echo "---- guest console" >&2; cat "$TMP/console.log" >&2 || true
  echo "---- guest findings" >&2; cat "$TMP/results" >&2 || true
  echo "---- qemu" >&2; cat "$TMP/qemu.log" >&2 || true
  echo "---- nbdkit (last 30 lines)" >&2; tail -30 "$TMP/nbdkit.log" >&2 || true
fi
stop_nbdkit
finish
