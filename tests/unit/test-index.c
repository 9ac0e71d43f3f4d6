/* s3bd: unit tests for lib/index.c: round trips, byte-identical
 * re-encoding, look-ups on every block of a small device, every flipped
 * byte and every truncation refused, decode's own checks (sections
 * rebuilt here from docs/index-format.md with valid checksums but bad
 * contents), atomic files, and the size of a million-object index.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "s3bd/error.h"
#include "s3bd/index.h"

#define BS 4096

/* ---- A small index with every feature ---- */

static const char *const buckets[] = { "bucket-a", "b.two", "third-bucket" };

static char long_key[1025];
static unsigned char content[7 * BS];

static struct index_object objects[] = {
  { "a/b/c.jpg", "\"0123456789abcdef0123456789abcdef\"", 0, BS, 1700000000,
    123000000, 40 },
  /* multipart */
  { "a/b/d.jpg", "\"abc-12\"", 1, BS + 1, 1700000001, 0, 41 },
  /* empty, no quotes: it takes no blocks and sorts before the object
   * that starts where it would */
  { "a/empty", "fedcba9876543210fedcba9876543210", 0, 0, 1700000000, 5, 43 },
  /* upper-case hex is not the MD5 form: kept as a string */
  { "a/\xc3\xbcmlaut \xc3\xbcnd spaces/%41+key\twith\ttab",
    "\"0123456789ABCDEF0123456789ABCDEF\"", 2, 10000, -5, 999999999, 43 },
  { long_key, "", 0, 1, INT64_MAX, 1, 50 },
  { "z", "W/\"weak\"", 1, 3 * BS, INT64_MIN, 0, 60 },
  /* ends exactly at the end of the device */
  { "zz/last", "\"00000000000000000000000000000000\"", 2, 10 * BS - 7, 0, 0,
    190 },
};

static struct index_meta_run runs[] = {
  { 0, 1, 0, false },  /* 0: content 0 */
  { 1, 3, 1, false },  /* 1-3: content 1, 2, 3 */
  { 4, 10, 4, true },  /* 4-13: content 4 ten times */
  { 20, 5, 4, true },  /* 20-24: content 4 again */
  { 30, 2, 5, false }, /* 30-31: content 5, 6 */
  { 46, 2, 0, false }, /* 46-47, between objects */
};

static struct index_leftout left[] = {
  { "a//b", 0, 1 },
  { "a/./c", 1, 2 },
  { "lost+found", 0, 8 },
  { "x/", 2, 5 },
};

#define N(a) (sizeof (a) / sizeof *(a))

static void
small_index (struct s3bd_index *idx)
{
  memset (long_key, 'k', sizeof long_key - 1);
  long_key[0] = 'm';
  for (size_t i = 0; i < sizeof content; i++)
    content[i] = (unsigned char)((i / BS) * 37 + (i % 251));
  memset (idx, 0, sizeof *idx);
  idx->block_size = BS;
  idx->device_blocks = 200;
  idx->data_start = 40;
  idx->source_kind = INDEX_SOURCE_PREFIX;
  idx->prefix = "imagenet/train/";
  idx->buckets = (const char **)buckets;
  idx->nbuckets = N (buckets);
  idx->shard_index = 1;
  idx->shard_count = 3;
  idx->created = 1700000123;
  idx->objects = objects;
  idx->nobjects = N (objects);
  idx->runs = runs;
  idx->nruns = N (runs);
  idx->content = content;
  idx->ncontent = sizeof content / BS;
  idx->left = left;
  idx->nleft = N (left);
}

static void
assert_index_equal (const struct s3bd_index *a, const struct s3bd_index *b)
{
  assert_int_equal (a->block_size, b->block_size);
  assert_int_equal (a->device_blocks, b->device_blocks);
  assert_int_equal (a->data_start, b->data_start);
  assert_int_equal (a->source_kind, b->source_kind);
  assert_string_equal (a->prefix, b->prefix);
  assert_int_equal (a->nbuckets, b->nbuckets);
  for (uint32_t i = 0; i < a->nbuckets; i++)
    assert_string_equal (a->buckets[i], b->buckets[i]);
  assert_int_equal (a->shard_index, b->shard_index);
  assert_int_equal (a->shard_count, b->shard_count);
  assert_true (a->created == b->created);
  assert_int_equal (a->nobjects, b->nobjects);
  for (uint64_t i = 0; i < a->nobjects; i++)
    {
      const struct index_object *x = &a->objects[i], *y = &b->objects[i];

      assert_string_equal (x->key, y->key);
      assert_string_equal (x->etag, y->etag);
      assert_int_equal (x->bucket, y->bucket);
      assert_int_equal (x->size, y->size);
      assert_true (x->mtime == y->mtime);
      assert_int_equal (x->mtime_nsec, y->mtime_nsec);
      assert_int_equal (x->first_block, y->first_block);
    }
  assert_int_equal (a->nruns, b->nruns);
  for (uint64_t i = 0; i < a->nruns; i++)
    {
      assert_int_equal (a->runs[i].block, b->runs[i].block);
      assert_int_equal (a->runs[i].count, b->runs[i].count);
      assert_int_equal (a->runs[i].first, b->runs[i].first);
      assert_int_equal (a->runs[i].repeated, b->runs[i].repeated);
    }
  assert_int_equal (a->ncontent, b->ncontent);
  if (a->ncontent)
    assert_memory_equal (a->content, b->content, a->ncontent * a->block_size);
  assert_int_equal (a->nleft, b->nleft);
  for (uint64_t i = 0; i < a->nleft; i++)
    {
      assert_string_equal (a->left[i].key, b->left[i].key);
      assert_int_equal (a->left[i].bucket, b->left[i].bucket);
      assert_int_equal (a->left[i].reason, b->left[i].reason);
    }
}

static unsigned char *
encode_small (size_t *len)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };
  void *buf;

  small_index (&idx);
  if (index_encode (&idx, &buf, len, &err) == -1)
    fail_msg ("index_encode: %s", err.msg);
  return buf;
}

/* ---- Round trip and determinism ---- */

static void
test_round_trip (void **state)
{
  struct s3bd_index in, out;
  struct s3bd_error err = { 0 };
  unsigned char *buf;
  size_t len;

  small_index (&in);
  buf = encode_small (&len);
  if (index_decode (buf, len, &out, &err) == -1)
    fail_msg ("index_decode: %s", err.msg);
  assert_index_equal (&in, &out);
  assert_int_equal (strlen (out.objects[4].key), 1024);
  index_free (&out);
  assert_null (out.priv);
  index_free (&out); /* twice is harmless */
  free (buf);
}

static void
test_encode_is_deterministic (void **state)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };
  unsigned char *a, *b;
  void *c;
  size_t alen, blen, clen;

  a = encode_small (&alen);
  b = encode_small (&blen);
  assert_int_equal (alen, blen);
  assert_memory_equal (a, b, alen);

  /* Decoding and encoding again gives the same bytes too. */
  assert_int_equal (index_decode (a, alen, &idx, &err), 0);
  assert_int_equal (index_encode (&idx, &c, &clen, &err), 0);
  assert_int_equal (alen, clen);
  assert_memory_equal (a, c, alen);
  index_free (&idx);
  free (a);
  free (b);
  free (c);
}

static void
test_empty_index (void **state)
{
  struct s3bd_index in, out;
  struct s3bd_error err = { 0 };
  struct index_lookup l;
  void *buf;
  size_t len;

  memset (&in, 0, sizeof in);
  in.block_size = 1024;
  in.device_blocks = 1;
  in.data_start = 1;
  in.source_kind = INDEX_SOURCE_MANIFEST;
  in.prefix = "";
  in.shard_count = 1;
  assert_int_equal (index_encode (&in, &buf, &len, &err), 0);
  assert_int_equal (index_decode (buf, len, &out, &err), 0);
  assert_index_equal (&in, &out);
  assert_int_equal (index_lookup (&out, 0, &l), 0);
  assert_int_equal (l.kind, INDEX_HOLE);
  assert_int_equal (l.count, 1);
  assert_int_equal (index_lookup (&out, 1, &l), -1);
  index_free (&out);
  free (buf);
}

/* ---- Look-up ---- */

static void
expect (const struct s3bd_index *idx, uint64_t block,
        enum index_block_kind kind, uint64_t count, uint64_t what,
        uint64_t offset)
{
  struct index_lookup l;

  assert_int_equal (index_lookup (idx, block, &l), 0);
  assert_int_equal (l.kind, kind);
  assert_int_equal (l.count, count);
  if (kind == INDEX_META)
    assert_ptr_equal (l.meta, idx->content + what * BS);
  if (kind == INDEX_DATA)
    {
      assert_int_equal (l.object, what);
      assert_int_equal (l.object_block, offset);
    }
}

static void
check_lookups (const struct s3bd_index *idx)
{
  struct index_lookup l, m;

  expect (idx, 0, INDEX_META, 1, 0, 0);
  expect (idx, 1, INDEX_META, 3, 1, 0);
  expect (idx, 3, INDEX_META, 1, 3, 0);
  expect (idx, 4, INDEX_META, 10, 4, 0);
  expect (idx, 13, INDEX_META, 1, 4, 0); /* repeated: same block */
  expect (idx, 14, INDEX_HOLE, 6, 0, 0);
  expect (idx, 19, INDEX_HOLE, 1, 0, 0);
  expect (idx, 20, INDEX_META, 5, 4, 0);
  expect (idx, 25, INDEX_HOLE, 5, 0, 0);
  expect (idx, 31, INDEX_META, 1, 6, 0);
  expect (idx, 32, INDEX_HOLE, 8, 0, 0);
  expect (idx, 40, INDEX_DATA, 1, 0, 0);
  expect (idx, 41, INDEX_DATA, 2, 1, 0);
  expect (idx, 42, INDEX_DATA, 1, 1, 1);
  expect (idx, 43, INDEX_DATA, 3, 3, 0); /* not the empty object 2 */
  expect (idx, 45, INDEX_DATA, 1, 3, 2);
  expect (idx, 46, INDEX_META, 2, 0, 0);
  expect (idx, 48, INDEX_HOLE, 2, 0, 0);
  expect (idx, 50, INDEX_DATA, 1, 4, 0);
  expect (idx, 51, INDEX_HOLE, 9, 0, 0);
  expect (idx, 60, INDEX_DATA, 3, 5, 0);
  expect (idx, 63, INDEX_HOLE, 127, 0, 0);
  expect (idx, 190, INDEX_DATA, 10, 6, 0);
  expect (idx, 199, INDEX_DATA, 1, 6, 9);
  assert_int_equal (index_lookup (idx, 200, &l), -1);
  assert_int_equal (index_lookup (idx, UINT64_MAX, &l), -1);

  /* Every block: `count` blocks share its kind and source, and the
   * next one does not.
   */
  for (uint64_t b = 0; b < idx->device_blocks; b++)
    {
      assert_int_equal (index_lookup (idx, b, &l), 0);
      assert_true (l.count >= 1 && b + l.count <= idx->device_blocks);
      for (uint64_t k = 1; k < l.count; k++)
        {
          assert_int_equal (index_lookup (idx, b + k, &m), 0);
          assert_int_equal (m.kind, l.kind);
          assert_int_equal (m.count, l.count - k);
          if (l.kind == INDEX_DATA)
            {
              assert_int_equal (m.object, l.object);
              assert_int_equal (m.object_block, l.object_block + k);
            }
        }
      if (b + l.count < idx->device_blocks)
        {
          assert_int_equal (index_lookup (idx, b + l.count, &m), 0);
          assert_true (m.kind != l.kind || l.kind != INDEX_HOLE);
        }
    }
}

static void
test_lookup (void **state)
{
  struct s3bd_index idx, out;
  struct s3bd_error err = { 0 };
  unsigned char *buf;
  size_t len;

  small_index (&idx);
  check_lookups (&idx);

  buf = encode_small (&len);
  assert_int_equal (index_decode (buf, len, &out, &err), 0);
  check_lookups (&out);
  index_free (&out);
  free (buf);
}

/* ---- Corruption: every byte, every length ---- */

static void
expect_decode_error (const void *buf, size_t len, const char *part)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };

  memset (&idx, 0x5a, sizeof idx);
  if (index_decode (buf, len, &idx, &err) != -1)
    fail_msg ("decode of a bad index succeeded (want \"%s\")",
              part ? part : "");
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_true (err.msg[0] != '\0');
  if (part && strstr (err.msg, part) == NULL)
    fail_msg ("error \"%s\" does not contain \"%s\"", err.msg, part);
  assert_null (idx.priv);
  assert_null (idx.objects);
}

static void
test_every_flipped_byte (void **state)
{
  static const unsigned char flips[] = { 0x01, 0x80, 0xff };
  unsigned char *buf;
  size_t len;

  buf = encode_small (&len);
  for (size_t f = 0; f < sizeof flips; f++)
    for (size_t i = 0; i < len; i++)
      {
        buf[i] ^= flips[f];
        expect_decode_error (buf, len, NULL);
        buf[i] ^= flips[f];
      }
  free (buf);
}

static void
test_every_truncation (void **state)
{
  unsigned char *buf, *copy;
  size_t len;

  buf = encode_small (&len);
  for (size_t n = 0; n < len; n++)
    {
      /* An exact-size copy, so ASan sees any read past the end. */
      copy = malloc (n ? n : 1);
      assert_non_null (copy);
      memcpy (copy, buf, n);
      expect_decode_error (copy, n, n < 8 ? "not an s3bd index" : "trunc");
      free (copy);
    }
  free (buf);
}

static void
test_messages (void **state)
{
  unsigned char *buf;
  size_t len;

  buf = encode_small (&len);
  buf[0] = 'X';
  expect_decode_error (buf, len, "not an s3bd index (bad magic)");
  buf[0] = 'S';

  buf[8] = 3;
  expect_decode_error (buf, len,
                       "index version 3 is newer than this s3bd supports (2)");
  buf[8] = 0;
  expect_decode_error (buf, len, "index version 0 is invalid");
  buf[8] = 1;

  buf[20] ^= 1;
  expect_decode_error (buf, len,
                       "index header: checksum mismatch (corrupt index)");
  buf[20] ^= 1;

  /* A byte of the OBJECTS section: its offset is in the table. */
  {
    uint64_t off = 0;

    for (int i = 0; i < 8; i++)
      off |= (uint64_t)buf[96 + 32 + 8 + i] << (8 * i);
    buf[off + 3] ^= 0x10;
    expect_decode_error (
        buf, len, "index section OBJECTS: checksum mismatch (corrupt index)");
  }
  free (buf);
}

/* ---- Decode's own checks: sections rebuilt with valid checksums ----
 *
 * These follow docs/index-format.md independently of lib/index.c.
 */

static uint64_t
le (const unsigned char *p, int n)
{
  uint64_t v = 0;

  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void
put_le (unsigned char *p, uint64_t v, int n)
{
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void
fix_header_crc (unsigned char *buf)
{
  put_le (buf + 260, crc32 (0, buf, 260), 4);
}

typedef void mutate_fn (unsigned char **raw, size_t *rawlen, size_t n);

/* Decompresses every section, lets mut change section `type` (n is that
 * section's record count), compresses them again and writes a new
 * header with correct offsets, lengths and CRCs.
 */
static unsigned char *
rebuild (const unsigned char *in, int type, mutate_fn *mut, size_t *outlen)
{
  unsigned char *raw[6], *z[6], *out;
  size_t rl[6], zl[6], total = 264, off;
  static const int count_at[6] = { 0, 56, 64, 72, 80, 88 };

  for (int t = 1; t <= 5; t++)
    {
      const unsigned char *e = in + 96 + 32 * (t - 1);

      rl[t] = le (e + 24, 8);
      raw[t] = malloc (rl[t] + 1);
      assert_non_null (raw[t]);
      assert_int_equal (
          ZSTD_decompress (raw[t], rl[t], in + le (e + 8, 8), le (e + 16, 8)),
          rl[t]);
    }
  mut (&raw[type], &rl[type], le (in + count_at[type], type == 1 ? 4 : 8));
  for (int t = 1; t <= 5; t++)
    {
      z[t] = malloc (ZSTD_compressBound (rl[t]));
      assert_non_null (z[t]);
      zl[t]
          = ZSTD_compress (z[t], ZSTD_compressBound (rl[t]), raw[t], rl[t], 3);
      assert_false (ZSTD_isError (zl[t]));
      total += zl[t];
    }
  out = malloc (total);
  assert_non_null (out);
  memcpy (out, in, 264);
  off = 264;
  for (int t = 1; t <= 5; t++)
    {
      unsigned char *e = out + 96 + 32 * (t - 1);

      put_le (e + 4, crc32 (0, z[t], (uInt)zl[t]), 4);
      put_le (e + 8, off, 8);
      put_le (e + 16, zl[t], 8);
      put_le (e + 24, rl[t], 8);
      memcpy (out + off, z[t], zl[t]);
      off += zl[t];
      free (raw[t]);
      free (z[t]);
    }
  fix_header_crc (out);
  *outlen = total;
  return out;
}

static void
expect_rebuilt_error (int type, mutate_fn *mut, const char *part)
{
  unsigned char *buf, *bad;
  size_t len, badlen;

  buf = encode_small (&len);
  bad = rebuild (buf, type, mut, &badlen);
  expect_decode_error (bad, badlen, part);
  free (bad);
  free (buf);
}

static void
nothing (unsigned char **raw, size_t *len, size_t n)
{
}

/* The size of a key list at the start of a section: the columns that
 * follow start there.
 */
static size_t
keys_end (const unsigned char *raw, size_t n)
{
  size_t end = 4 * n;

  for (size_t i = 0; i < n; i++)
    end += raw[2 * n + i] | (size_t)raw[3 * n + i] << 8;
  return end;
}

/* OBJECTS columns after the keys: kind, bucket, size, mtime, nsec, gap. */
#define O_KIND(r, n) keys_end (r, n)
#define O_BUCKET(r, n) (keys_end (r, n) + (n))
#define O_NSEC(r, n) (keys_end (r, n) + 21 * (n))
#define O_GAP(r, n) (keys_end (r, n) + 25 * (n))

static void
bad_bucket (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[O_BUCKET (*raw, n) + 2] = 77;
}

static void
bad_etag_kind (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[O_KIND (*raw, n) + 1] = 9;
}

static void
bad_nsec (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[O_NSEC (*raw, n) + 3 * n + 0] = 0xff; /* high byte of object 0 */
}

static void
past_device (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[O_GAP (*raw, n) + n - 1] += 5; /* the last object, ending at 200 */
}

static void
huge_gap (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[O_GAP (*raw, n) + 7 * n + 1] = 0xff; /* high byte of object 1 */
}

static void
extra_byte (unsigned char **raw, size_t *len, size_t n)
{
  (*len)++; /* rebuild's buffers have a spare byte */
  (*raw)[*len - 1] = 'x';
}

static void
short_by_one (unsigned char **raw, size_t *len, size_t n)
{
  (*len)--;
}

static void
key_shares_too_much (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[1] = 200; /* object 1 shares 200 bytes with a 9-byte key */
}

static void
nul_in_left_key (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[4 * n] = '\0';
}

static void
bad_reason (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[keys_end (*raw, n) + 4 * n + 1] = 0; /* key 1: reason 2 -> 0 */
}

static void
run_on_object (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[5] -= 4; /* the run at 46 moves to 42, inside object 1 */
}

static void
run_flag (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[16 * n] = 2;
}

static void
run_content (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[12 * n + 1] = 5; /* run 1 (sequential, 3 blocks) from content 5 */
}

static void
run_empty (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[8 * n + 2] = 0;
}

static void
nul_in_bucket (unsigned char **raw, size_t *len, size_t n)
{
  (*raw)[4] = '\0';
}

static void
test_decode_checks (void **state)
{
  /* A rebuilt section decodes when left alone. */
  {
    struct s3bd_index idx;
    struct s3bd_error err = { 0 };
    unsigned char *buf, *re;
    size_t len, relen;

    buf = encode_small (&len);
    re = rebuild (buf, 2, nothing, &relen);
    if (index_decode (re, relen, &idx, &err) == -1)
      fail_msg ("%s", err.msg);
    index_free (&idx);
    free (re);
    free (buf);
  }
  expect_rebuilt_error (1, nul_in_bucket, "index section SOURCE: NUL byte");
  expect_rebuilt_error (1, extra_byte, "index section SOURCE: 1 bytes left");
  expect_rebuilt_error (1, short_by_one, "SOURCE: truncated");
  expect_rebuilt_error (2, bad_bucket, "object 2 (a/empty): bucket 77 of 3");
  expect_rebuilt_error (2, bad_etag_kind, "unknown ETag encoding 9");
  expect_rebuilt_error (2, bad_nsec, "mtime_nsec");
  expect_rebuilt_error (2, past_device, "past the end of the device");
  expect_rebuilt_error (2, huge_gap, "index object 1 (a/b/d.jpg)");
  expect_rebuilt_error (2, extra_byte, "bytes of ETags where");
  expect_rebuilt_error (2, short_by_one, "bytes of ETags where");
  expect_rebuilt_error (2, key_shares_too_much,
                        "key 1 shares 200 bytes with a key of 9");
  expect_rebuilt_error (3, run_on_object, "overlaps object 1 (a/b/d.jpg)");
  expect_rebuilt_error (3, run_flag, "bad flag 2");
  expect_rebuilt_error (3, run_content, "content 5+3 of 7");
  expect_rebuilt_error (3, run_empty, "metadata run 2: empty");
  expect_rebuilt_error (3, extra_byte, "META_RUNS: 103 bytes for 6 runs");
  expect_rebuilt_error (4, short_by_one, "bytes for 7 blocks of 4096");
  expect_rebuilt_error (5, nul_in_left_key, "LEFTOUT: NUL byte in a key");
  expect_rebuilt_error (5, bad_reason, "left-out key 1 (a/./c): no reason");
  expect_rebuilt_error (5, extra_byte,
                        "LEFTOUT: 33 bytes of buckets and reasons for 4 keys");
}

/* Header fields changed with a valid header CRC. */
static void
expect_header_error (size_t at, uint64_t v, int width, const char *part)
{
  unsigned char *buf;
  size_t len;

  buf = encode_small (&len);
  put_le (buf + at, v, width);
  fix_header_crc (buf);
  expect_decode_error (buf, len, part);
  free (buf);
}

static void
test_header_checks (void **state)
{
  unsigned char *buf, *big;
  size_t len;

  expect_header_error (12, 256, 4, "bad header size");
  expect_header_error (16, 1000, 4, "block size 1000 is not a power of two");
  expect_header_error (16, 256, 4, "block size 256");
  expect_header_error (16, 131072, 4, "block size 131072");
  expect_header_error (20, 4, 4, "unknown source kind 4");
  expect_header_error (24, 0, 8, "device size");
  expect_header_error (24, UINT64_MAX / 2, 8, "device size");
  expect_header_error (32, 201, 8, "data region starts at block 201");
  expect_header_error (40, 3, 4, "shard 3 of 3");
  expect_header_error (44, 0, 4, "shard 1 of 0");
  expect_header_error (56, 4, 4, "SOURCE");
  expect_header_error (56, UINT32_MAX, 4, "buckets cannot fit");
  expect_header_error (60, 6, 4, "section count");
  expect_header_error (64, 8, 8, "OBJECTS");
  expect_header_error (64, UINT64_MAX, 8, "objects cannot fit");
  expect_header_error (72, 5, 8, "META_RUNS");
  expect_header_error (80, 8, 8, "META_CONTENT");
  expect_header_error (80, UINT64_MAX / 4096 + 1, 8, "META_CONTENT");
  expect_header_error (88, 5, 8, "LEFTOUT");
  expect_header_error (88, 1ULL << 60, 8, "keys cannot fit");
  expect_header_error (256, 1, 4, "reserved");
  /* the section table */
  expect_header_error (96, 2, 4, "section table entry 1 is not SOURCE");
  expect_header_error (96 + 32 + 8, 1000, 8, "entry 2 is not OBJECTS");
  expect_header_error (96 + 32 + 16, 1ULL << 40, 8, "truncated");
  expect_header_error (96 + 32 + 24, 1ULL << 40, 8, "impossible");
  expect_header_error (96 + 32 + 24, 1ULL << 63, 8, "impossible");
  expect_header_error (96 + 32 + 24, 0, 8, "differs from the raw length");

  /* Bytes after the last section. */
  buf = encode_small (&len);
  big = malloc (len + 1);
  assert_non_null (big);
  memcpy (big, buf, len);
  big[len] = 0;
  expect_decode_error (big, len + 1, "1 stray bytes after the last section");
  free (big);
  free (buf);
}

/* ---- Encode refuses what decode would refuse ---- */

static void
expect_encode_error (struct s3bd_index *idx, const char *part)
{
  struct s3bd_error err = { 0 };
  void *buf = (void *)1;
  size_t len = 1;

  assert_int_equal (index_encode (idx, &buf, &len, &err), -1);
  assert_null (buf);
  assert_int_equal (len, 0);
  assert_int_equal (err.code, S3BD_EINVAL);
  if (strstr (err.msg, part) == NULL)
    fail_msg ("error \"%s\" does not contain \"%s\"", err.msg, part);
}

static void
test_encode_checks (void **state)
{
  struct s3bd_index idx;
  struct index_object o[2];
  struct index_meta_run r[2];
  struct index_leftout l[1];

  small_index (&idx);
  idx.block_size = 4095;
  expect_encode_error (&idx, "block size 4095");

  small_index (&idx);
  memcpy (o, objects, sizeof o);
  idx.objects = o;
  idx.nobjects = 2;
  o[1].first_block = 40; /* overlaps object 0 */
  expect_encode_error (&idx, "index object 1 (a/b/d.jpg): first block 40 "
                             "overlaps");
  o[1].first_block = 199;
  expect_encode_error (&idx, "blocks 199+2 are past the end");
  o[1].first_block = 41;
  o[0].first_block = 39;
  expect_encode_error (&idx, "before the data region");
  o[0].first_block = 40;
  o[1].bucket = 3;
  expect_encode_error (&idx, "bucket 3 of 3");
  o[1].bucket = 0;
  o[1].etag = NULL;
  expect_encode_error (&idx, "no ETag");
  o[1].etag = "x";
  o[1].key = "";
  expect_encode_error (&idx, "object 1: key empty");
  o[1].key = NULL;
  expect_encode_error (&idx, "object 1: no key");
  o[1].key = "k";
  o[1].mtime_nsec = 1000000000;
  expect_encode_error (&idx, "mtime_nsec 1000000000");
  o[1].mtime_nsec = 0;
  o[1].size = UINT64_MAX;
  expect_encode_error (&idx, "past the end of the device");

  small_index (&idx);
  memcpy (r, runs, sizeof r);
  idx.runs = r;
  idx.nruns = 2;
  r[1].block = 0;
  expect_encode_error (&idx, "metadata run 1: block 0 overlaps");
  r[1].block = 198;
  r[1].count = 3;
  expect_encode_error (&idx, "past the end of the device");
  r[1].block = 39;
  expect_encode_error (&idx, "overlaps object 0 (a/b/c.jpg)");
  r[1].block = 1;
  r[1].first = 6;
  expect_encode_error (&idx, "content 6+3 of 7");
  r[1].repeated = true;
  r[1].first = 7;
  expect_encode_error (&idx, "content 7+1 of 7");

  small_index (&idx);
  l[0] = left[0];
  idx.left = l;
  idx.nleft = 1;
  l[0].reason = 0;
  expect_encode_error (&idx, "left-out key 0 (a//b): no reason");
  l[0].reason = 1;
  l[0].bucket = 9;
  expect_encode_error (&idx, "bucket 9 of 3");
  l[0].bucket = 0;
  l[0].key = long_key; /* 1024 bytes: fine */
  {
    char k[1026];

    memset (k, 'a', 1025);
    k[1025] = '\0';
    l[0].key = k;
    expect_encode_error (&idx, "key over 1024 bytes");
  }

  small_index (&idx);
  idx.buckets = (const char *[]){ "a", "", "c" };
  expect_encode_error (&idx, "bucket 1: no name");
  small_index (&idx);
  idx.prefix = NULL;
  expect_encode_error (&idx, "no source prefix");
}

/* ---- Files ---- */

static char tmpdir[64];

static int
setup (void **state)
{
  snprintf (tmpdir, sizeof tmpdir, "/tmp/test-index.XXXXXX");
  return mkdtemp (tmpdir) ? 0 : -1;
}

static int
remove_cb (const char *path, const struct stat *st, int flag, struct FTW *f)
{
  return remove (path);
}

static int
teardown (void **state)
{
  return nftw (tmpdir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int
count_entries (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      n++;
  closedir (d);
  return n;
}

static void
test_write_file_missing_directory (void **state)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };
  char path[128];

  small_index (&idx);
  snprintf (path, sizeof path, "%s/no/such/dir/train.s3bd", tmpdir);
  assert_int_equal (index_write_file (&idx, path, &err), -1);
  assert_int_equal (err.code, S3BD_EIO);
  assert_non_null (strstr (err.msg, path));
  assert_non_null (strstr (err.msg, "No such file or directory"));
  assert_int_equal (count_entries (tmpdir), 0);
}

static void
test_write_file_failure_leaves_nothing (void **state)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };
  char path[128];

  /* The rename fails: the target is a non-empty directory. */
  small_index (&idx);
  snprintf (path, sizeof path, "%s/train.s3bd", tmpdir);
  assert_int_equal (mkdir (path, 0755), 0);
  snprintf (path, sizeof path, "%s/train.s3bd/x", tmpdir);
  assert_int_equal (mkdir (path, 0755), 0);
  snprintf (path, sizeof path, "%s/train.s3bd", tmpdir);
  assert_int_equal (index_write_file (&idx, path, &err), -1);
  assert_int_equal (err.code, S3BD_EIO);
  assert_non_null (strstr (err.msg, path));
  assert_int_equal (count_entries (tmpdir), 1);

  /* An invalid index is refused before anything is created. */
  idx.block_size = 3;
  snprintf (path, sizeof path, "%s/other.s3bd", tmpdir);
  assert_int_equal (index_write_file (&idx, path, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_non_null (strstr (err.msg, "writing index "));
  assert_non_null (strstr (err.msg, "block size 3"));
  assert_int_equal (count_entries (tmpdir), 1);
}

static void
test_write_file_replaces_whole (void **state)
{
  struct s3bd_index a, b, out;
  struct s3bd_error err = { 0 };
  struct stat sb;
  char path[128];
  unsigned char *old = NULL;
  size_t oldlen;
  int fd;

  small_index (&a);
  snprintf (path, sizeof path, "%s/train.s3bd", tmpdir);
  if (index_write_file (&a, path, &err) == -1)
    fail_msg ("%s", err.msg);
  assert_int_equal (stat (path, &sb), 0);
  assert_int_equal (sb.st_mode & 0777, 0644);
  old = encode_small (&oldlen);
  assert_int_equal (sb.st_size, oldlen);

  /* A reader that opened the old file keeps it whole. */
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);

  b = a;
  b.nobjects = 1;
  b.nruns = 0;
  b.nleft = 0;
  b.prefix = "another/prefix/";
  if (index_write_file (&b, path, &err) == -1)
    fail_msg ("%s", err.msg);
  assert_int_equal (count_entries (tmpdir), 1);
  if (index_read_file (path, &out, &err) == -1)
    fail_msg ("%s", err.msg);
  assert_index_equal (&b, &out);
  index_free (&out);

  {
    unsigned char *got = malloc (oldlen);

    assert_non_null (got);
    assert_int_equal (pread (fd, got, oldlen, 0), oldlen);
    assert_memory_equal (got, old, oldlen);
    free (got);
  }
  close (fd);
  free (old);
}

static void
test_read_file_errors (void **state)
{
  struct s3bd_index idx;
  struct s3bd_error err = { 0 };
  char path[128];
  FILE *f;

  snprintf (path, sizeof path, "%s/missing.s3bd", tmpdir);
  assert_int_equal (index_read_file (path, &idx, &err), -1);
  assert_int_equal (err.code, S3BD_EIO);
  assert_non_null (strstr (err.msg, path));
  assert_null (idx.priv);

  snprintf (path, sizeof path, "%s/junk.s3bd", tmpdir);
  f = fopen (path, "w");
  assert_non_null (f);
  fputs ("S3BDIDX", f);
  fclose (f);
  assert_int_equal (index_read_file (path, &idx, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_non_null (strstr (err.msg, path));
  assert_non_null (strstr (err.msg, "not an s3bd index"));

  assert_int_equal (index_read_file (tmpdir, &idx, &err), -1);
  assert_non_null (strstr (err.msg, "not a regular file"));
}

/* ---- Size: a million objects ---- */

static uint64_t rng = 0x9e3779b97f4a7c15;

static uint64_t
next_random (void)
{
  /* xorshift64*: fixed seed, same index every run */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

static void
test_million_objects (void **state)
{
  const size_t n = 1000000;
  struct s3bd_index idx, out;
  struct s3bd_error err = { 0 };
  struct index_object *o;
  char *keys, *etags;
  void *buf;
  size_t len;
  uint64_t block = 1000, mtime = 1700000000;
  const unsigned char *h;

  o = calloc (n, sizeof *o);
  keys = malloc (n * 32);
  etags = malloc (n * 35);
  assert_true (o && keys && etags);
  for (size_t i = 0; i < n; i++)
    {
      char *k = keys + 32 * i, *e = etags + 35 * i;

      snprintf (k, 32, "train/class%04zu/img%07zu.jpg", i / 1000, i);
      e[0] = '"';
      for (int j = 0; j < 2; j++)
        {
          uint64_t r = next_random ();

          for (int d = 0; d < 16; d++)
            e[1 + 16 * j + d] = "0123456789abcdef"[(r >> (4 * d)) & 15];
        }
      e[33] = '"';
      e[34] = '\0';
      o[i].key = k;
      o[i].etag = e;
      o[i].bucket = 0;
      o[i].size = 80 * 1024 + next_random () % (40 * 1024);
      mtime += next_random () % 3;
      o[i].mtime = (int64_t)mtime;
      o[i].mtime_nsec = (uint32_t)(next_random () % 1000) * 1000000;
      o[i].first_block = block;
      block += (o[i].size + BS - 1) / BS;
    }
  memset (&idx, 0, sizeof idx);
  idx.block_size = BS;
  idx.device_blocks = block + 10;
  idx.data_start = 1000;
  idx.source_kind = INDEX_SOURCE_PREFIX;
  idx.prefix = "datasets/imagenet/";
  idx.buckets = (const char **)buckets;
  idx.nbuckets = 1;
  idx.shard_count = 1;
  idx.objects = o;
  idx.nobjects = n;

  if (index_encode (&idx, &buf, &len, &err) == -1)
    fail_msg ("%s", err.msg);
  h = buf;
  printf ("index of %zu objects: %zu bytes, %.2f bytes/object "
          "(OBJECTS section %" PRIu64 " bytes, raw %" PRIu64 ")\n",
          n, len, (double)len / (double)n, le (h + 96 + 32 + 16, 8),
          le (h + 96 + 32 + 24, 8));
  assert_true (len < 64 * n);

  if (index_decode (buf, len, &out, &err) == -1)
    fail_msg ("%s", err.msg);
  assert_index_equal (&idx, &out);
  for (int i = 0; i < 1000; i++)
    {
      struct index_lookup l;
      uint64_t k = next_random () % n;
      uint64_t off = next_random () % ((o[k].size + BS - 1) / BS);

      assert_int_equal (index_lookup (&out, o[k].first_block + off, &l), 0);
      assert_int_equal (l.kind, INDEX_DATA);
      assert_int_equal (l.object, k);
      assert_int_equal (l.object_block, off);
    }
  index_free (&out);
  free (buf);
  free (o);
  free (keys);
  free (etags);
}

/* ---- Version 2: Pipe records ---- */

static void
test_records_round_trip (void **state)
{
  static const char text1[] = "{\"w\":3}", text2[] = "\"cat\"";
  struct index_record rec[] = {
    { 1, NULL, 0, true },
    { INDEX_RECORD_INLINE, text1, sizeof text1 - 1, false },
    { 0, NULL, 0, true },
    { INDEX_RECORD_INLINE, text2, sizeof text2 - 1, false },
    { 1, NULL, 0, false },
  };
  struct s3bd_index in, out;
  struct s3bd_error err = { 0 };
  unsigned char *buf;
  void *v;
  size_t len;
  uint64_t off, n;

  (void)state;
  small_index (&in);
  in.source_kind = INDEX_SOURCE_AUGMENTED_MANIFEST;
  in.records = rec;
  in.nrecords = N (rec);
  assert_int_equal (index_encode (&in, &v, &len, &err), 0);
  buf = v;
  /* Version 2: a 304-byte header, six sections, nrecords at 288. */
  assert_int_equal (buf[8], 2);
  assert_int_equal (buf[12] | buf[13] << 8, 304);
  assert_int_equal (buf[60], 6);
  assert_int_equal (buf[288], N (rec));
  assert_int_equal (index_decode (buf, len, &out, &err), 0);
  assert_int_equal (out.nrecords, N (rec));
  for (size_t i = 0; i < N (rec); i++)
    {
      assert_int_equal (out.records[i].object, rec[i].object);
      assert_int_equal (out.records[i].first, rec[i].first);
      assert_int_equal (out.records[i].len, rec[i].len);
      if (rec[i].text)
        assert_memory_equal (out.records[i].text, rec[i].text, rec[i].len);
      else
        assert_null (out.records[i].text);
    }
  assert_int_equal (out.nobjects, in.nobjects);
  index_free (&out);

  /* A flipped byte of RECORDS (entry 6 of the table) is found. */
  off = 0;
  for (int i = 0; i < 8; i++)
    off |= (uint64_t)buf[96 + 5 * 32 + 8 + i] << (8 * i);
  buf[off + 2] ^= 0x40;
  expect_decode_error (buf, len,
                       "index section RECORDS: checksum mismatch (corrupt "
                       "index)");
  buf[off + 2] ^= 0x40;
  /* A version 2 header cut to version 1's length. */
  expect_decode_error (buf, 280, "index truncated in its header (280 of 304");
  free (buf);

  /* What encode refuses. */
  in.source_kind = INDEX_SOURCE_PREFIX;
  assert_int_equal (index_encode (&in, &v, &n, &err), -1);
  assert_non_null (strstr (err.msg, "not an augmented manifest"));
  in.source_kind = INDEX_SOURCE_AUGMENTED_MANIFEST;
  rec[0].first = false;
  assert_int_equal (index_encode (&in, &v, &n, &err), -1);
  assert_non_null (strstr (err.msg, "record 0: does not start a line"));
  rec[0].first = true;
  rec[4].object = N (objects);
  assert_int_equal (index_encode (&in, &v, &n, &err), -1);
  assert_non_null (strstr (err.msg, "index record 4: object"));
  rec[4].object = 1;
  rec[1].len = 0;
  assert_int_equal (index_encode (&in, &v, &n, &err), -1);
  assert_non_null (strstr (err.msg, "index record 1: an inline value of 0"));
}

/* An index without records is still written as version 1. */
static void
test_version_1_without_records (void **state)
{
  unsigned char *buf;
  size_t len;

  (void)state;
  buf = encode_small (&len);
  assert_int_equal (buf[8], 1);
  assert_int_equal (buf[12] | buf[13] << 8, 264);
  assert_int_equal (buf[60], 5);
  free (buf);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_round_trip),
    cmocka_unit_test (test_records_round_trip),
    cmocka_unit_test (test_version_1_without_records),
    cmocka_unit_test (test_encode_is_deterministic),
    cmocka_unit_test (test_empty_index),
    cmocka_unit_test (test_lookup),
    cmocka_unit_test (test_every_flipped_byte),
    cmocka_unit_test (test_every_truncation),
    cmocka_unit_test (test_messages),
    cmocka_unit_test (test_decode_checks),
    cmocka_unit_test (test_header_checks),
    cmocka_unit_test (test_encode_checks),
    cmocka_unit_test_setup_teardown (test_write_file_missing_directory, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_write_file_failure_leaves_nothing,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_write_file_replaces_whole, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_read_file_errors, setup, teardown),
    cmocka_unit_test (test_million_objects),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
