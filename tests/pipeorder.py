# The Pipe mode facts the tests recompute on their own, from the docs
# alone (docs/nbdkit-s3bd-plugin.md, "Pipe mode"), never from the
# exporter's code: the documented permutation of an epoch, the split of
# a list into parts balanced by bytes, the FIFO wait a reader does, and
# a RecordIO reader written from the format's description.  Imported by
# tests/test-plugin-pipe.sh and tests/test-plugin-pipe-augmented.sh.
import os, struct, sys, time

MAGIC = 0xCED7230A
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15

def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)

def permutation(n, seed, epoch):
    perm = list(range(n))
    if seed is None:
        return perm
    state = mix64(seed) ^ epoch
    for i in range(n - 1, 0, -1):
        state = (state + GOLDEN) & M64
        j = mix64(state) % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm

def cut(lst, sizes, part, parts):
    if parts <= 1:
        return lst
    total = sum(sizes[o] for o in lst)
    out, cum = [], 0
    for k, o in enumerate(lst):
        s = sizes[o]
        p = k * parts // len(lst) if total == 0 else (2 * cum + s) * parts // (2 * total)
        if min(p, parts - 1) == part:
            out.append(o)
        cum += s
    return out

def open_fifo(path, timeout=60):
    # As PipeModeDataset does: wait for the FIFO with a growing sleep.
    delay, end = 0.01, time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            sys.exit('%s: did not appear in %d s' % (path, timeout))
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return open(path, 'rb', buffering=0)

def parse_recordio(data):
    """Whole records (cflag 0, or 1/2/3 joined with the magic between, as
    dmlc-core reads them), and whether the stream ended inside one."""
    recs, pos, part = [], 0, None
    while pos < len(data):
        if len(data) - pos < 8:
            return recs, True
        magic, lrec = struct.unpack_from('<II', data, pos)
        if magic != MAGIC:
            sys.exit('bad magic %#x at byte %d' % (magic, pos))
        n, cflag = lrec & ((1 << 29) - 1), lrec >> 29
        padded = (n + 3) // 4 * 4
        if len(data) - pos - 8 < padded:
            return recs, True
        body = data[pos + 8:pos + 8 + n]
        if any(data[pos + 8 + n:pos + 8 + padded]):
            sys.exit('padding not zero at byte %d' % (pos + 8 + n))
        pos += 8 + padded
        if cflag == 0:
            recs.append(body)
        elif cflag == 1:
            part = bytearray(body)
        elif cflag in (2, 3) and part is not None:
            part += struct.pack('<I', MAGIC) + body
            if cflag == 3:
                recs.append(bytes(part))
                part = None
        else:
            sys.exit('cflag %d out of place at byte %d' % (cflag, pos))
    return recs, part is not None
