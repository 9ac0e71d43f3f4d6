/* s3bd: unit tests for lib/serve/map.c, the device through the index's
 * map: every byte of map_read against the device the index describes
 * (metadata from the index, zeros for holes and for an object's bytes
 * past its size, the object's bytes from the cache), for reads that start
 * and end on every kind of boundary; map_extents reporting holes exactly
 * where the map has them; map_prefetch fetching object bytes only, and
 * only those under the range; and a failed fetch failing the read.
 *
 * The index is built here, encoded and decoded, so the map is read the
 * way the plugin reads it.  Object bytes are a pure function of (object,
 * offset), so the fetcher needs no data and any read can be checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk-pattern.h"
#include "s3bd/cache.h"
#include "s3bd/error.h"
#include "s3bd/fetch.h"
#include "s3bd/index.h"
#include "s3bd/map.h"

#define BS 4096u
#define DEVICE_BLOCKS 36u
#define DEVICE (DEVICE_BLOCKS * (uint64_t)BS)

/* ---- The index ----
 *
 *   0      metadata (content 0)
 *   1-2    metadata (contents 1, 2), a run right after the first
 *   3-5    metadata (content 3 three times: a repeated run)
 *   6-7    hole
 *   8      metadata (content 4) between holes
 *   9      hole
 *   10-13  object 0 "a", 3 blocks + 100 bytes: a tail of zeros
 *   14     hole, cut short by the empty object at 15
 *   15     hole; object 1 "empty" (0 bytes) starts here and holds nothing
 *   16-17  object 2 "c", exactly 2 blocks
 *   18-19  object 3 "d", 5000 bytes, right after object 2
 *   20     metadata (content 5) right after an object, between two
 *   21     object 4 "e", 1 byte
 *   22-29  hole
 *   30-32  object 5 "f", 3 blocks less a byte
 *   33-34  hole
 *   35     object 6 "g", 10 bytes, ending the device
 */
static const char *const buckets[] = { "bkt" };

static struct index_object objects[] = {
  { "ds/a", "\"e0\"", 0, 3 * BS + 100, 1700000000, 0, 10 },
  { "ds/empty", "\"e1\"", 0, 0, 1700000000, 0, 15 },
  { "ds/c", "\"e2\"", 0, 2 * BS, 1700000000, 0, 16 },
  { "ds/d", "\"e3\"", 0, 5000, 1700000000, 0, 18 },
  { "ds/e", "\"e4\"", 0, 1, 1700000000, 0, 21 },
  { "ds/f", "\"e5\"", 0, 3 * BS - 1, 1700000000, 0, 30 },
  { "ds/g", "\"e6\"", 0, 10, 1700000000, 0, 35 },
};

static struct index_meta_run runs[] = {
  { 0, 1, 0, false }, { 1, 2, 1, false },  { 3, 3, 3, true },
  { 8, 1, 4, false }, { 20, 1, 5, false },
};

#define NCONTENT 6
#define N(a) (sizeof (a) / sizeof *(a))

static unsigned char content[NCONTENT * BS];

/* ---- A synchronous fetcher that logs its calls ---- */

#define LOG_MAX 64

struct tfetcher
{
  struct fetcher base;  /* first: the cache's pointer is ours */
  uint64_t fail_object; /* fetches of it fail; UINT64_MAX: none */
  unsigned calls;
  uint64_t log_object[LOG_MAX], log_off[LOG_MAX], log_len[LOG_MAX];
};

static void
test_fetch (struct fetcher *base, struct fetch_req *r)
{
  uint64_t object = r->object, off = r->off, len = r->len;
  const struct iovec *iov = r->iov;
  int iovcnt = r->iovcnt;
  struct tfetcher *f = (struct tfetcher *)base;
  struct s3bd_error e;

  assert_true (object < N (objects));
  assert_true (off + len <= objects[object].size);
  if (f->calls < LOG_MAX)
    {
      f->log_object[f->calls] = object;
      f->log_off[f->calls] = off;
      f->log_len[f->calls] = len;
    }
  f->calls++;
  if (object == f->fail_object)
    {
      s3bd_error_clear (&e);
      s3bd_fail (&e, S3BD_ESERVER, "GET object %" PRIu64 ": injected failure",
                 object);
      fetch_req_done (r, &e);
      return;
    }
  for (int i = 0; i < iovcnt; i++)
    {
      unsigned char *p = iov[i].iov_base;

      for (size_t k = 0; k < iov[i].iov_len; k++)
        p[k] = pattern_byte (object, off + k);
      off += iov[i].iov_len;
    }
  fetch_req_done (r, NULL);
}

static const struct fetch_ops test_ops
    = { .name = "test", .fetch = test_fetch };

/* ---- Fixtures ---- */

struct fixture
{
  struct s3bd_index idx; /* decoded */
  struct tfetcher f;
  struct cache *c;
  unsigned char *expected; /* the whole device */
  bool *hole;              /* per block */
};

static int
setup (void **state)
{
  struct fixture *fx = calloc (1, sizeof *fx);
  struct s3bd_index in;
  struct cache_config cfg
      = { .max_bytes = 64 * BS, .chunk_size = BS, .max_fetch = 16 * BS };
  struct s3bd_error err;
  void *buf;
  size_t len;

  assert_non_null (fx);
  for (size_t i = 0; i < sizeof content; i++)
    content[i] = (unsigned char)((i / BS) * 41 + (i % 253) + 1);
  memset (&in, 0, sizeof in);
  in.block_size = BS;
  in.device_blocks = DEVICE_BLOCKS;
  in.data_start = 10;
  in.source_kind = INDEX_SOURCE_PREFIX;
  in.prefix = "ds/";
  in.buckets = (const char **)buckets;
  in.nbuckets = N (buckets);
  in.shard_count = 1;
  in.created = 1700000000;
  in.objects = objects;
  in.nobjects = N (objects);
  in.runs = runs;
  in.nruns = N (runs);
  in.content = content;
  in.ncontent = NCONTENT;
  s3bd_error_clear (&err);
  if (index_encode (&in, &buf, &len, &err) == -1)
    fail_msg ("index_encode: %s", err.msg);
  if (index_decode (buf, len, &fx->idx, &err) == -1)
    fail_msg ("index_decode: %s", err.msg);
  free (buf);

  /* The device the index describes, built from the table above and not
   * through index_lookup.
   */
  fx->expected = calloc (1, DEVICE);
  fx->hole = calloc (DEVICE_BLOCKS, sizeof *fx->hole);
  assert_non_null (fx->expected);
  assert_non_null (fx->hole);
  for (size_t b = 0; b < DEVICE_BLOCKS; b++)
    fx->hole[b] = true;
  for (size_t r = 0; r < N (runs); r++)
    for (uint32_t i = 0; i < runs[r].count; i++)
      {
        uint64_t b = runs[r].block + i;
        uint32_t c = runs[r].repeated ? runs[r].first : runs[r].first + i;

        memcpy (fx->expected + b * BS, content + (size_t)c * BS, BS);
        fx->hole[b] = false;
      }
  for (size_t o = 0; o < N (objects); o++)
    {
      uint64_t start = objects[o].first_block * BS;

      for (uint64_t k = 0; k < objects[o].size; k++)
        fx->expected[start + k] = pattern_byte (o, k);
      for (uint64_t b = 0; b * BS < objects[o].size; b++)
        fx->hole[objects[o].first_block + b] = false;
    }

  memset (&fx->f, 0, sizeof fx->f);
  fx->f.base.ops = &test_ops;
  fx->f.fail_object = UINT64_MAX;
  if (cache_new (&cfg, &fx->f.base, &fx->c, &err) == -1)
    fail_msg ("cache_new: %s", err.msg);
  *state = fx;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *fx = *state;

  cache_free (fx->c);
  index_free (&fx->idx);
  free (fx->expected);
  free (fx->hole);
  free (fx);
  return 0;
}

static struct cache_stats
stats (struct fixture *fx)
{
  struct cache_stats s;

  cache_get_stats (fx->c, &s);
  return s;
}

/* Reads [off, off + len) into a buffer of garbage and checks every byte:
 * zeros must be written, not left.
 */
static void
read_ok (struct fixture *fx, uint64_t off, uint64_t len)
{
  unsigned char *buf = malloc (len ? len : 1);
  struct s3bd_error err;

  assert_non_null (buf);
  memset (buf, 0xa5, len);
  s3bd_error_clear (&err);
  if (map_read (&fx->idx, fx->c, buf, len, off, &err) == -1)
    fail_msg ("map_read %" PRIu64 "+%" PRIu64 ": %s", off, len, err.msg);
  for (uint64_t i = 0; i < len; i++)
    if (buf[i] != fx->expected[off + i])
      fail_msg ("map_read %" PRIu64 "+%" PRIu64 ": byte %" PRIu64
                " (block %" PRIu64 " + %" PRIu64 ") is %#x, expected %#x",
                off, len, off + i, (off + i) / BS, (off + i) % BS, buf[i],
                fx->expected[off + i]);
  free (buf);
}

/* Offsets where the map changes kind or source, and their neighbours:
 * every block boundary and every object's end, each -1, 0, +1.
 */
static size_t
boundaries (uint64_t *out, size_t max)
{
  size_t n = 0;

  for (uint64_t b = 0; b <= DEVICE_BLOCKS; b++)
    for (int d = -1; d <= 1; d++)
      {
        int64_t x = (int64_t)(b * BS) + d;

        if (x >= 0 && (uint64_t)x <= DEVICE && n < max)
          out[n++] = (uint64_t)x;
      }
  for (size_t o = 0; o < N (objects); o++)
    for (int d = -1; d <= 1; d++)
      {
        uint64_t x = objects[o].first_block * BS + objects[o].size + d;

        if (x <= DEVICE && n < max)
          out[n++] = x;
      }
  return n;
}

/* ---- Reads ---- */

static void
test_read_whole_device (void **state)
{
  struct fixture *fx = *state;
  struct cache_stats s;

  read_ok (fx, 0, DEVICE);
  s = stats (fx);
  /* One fetch per object with bytes, each of its size. */
  assert_int_equal (fx->f.calls, 6);
  assert_int_equal (s.fetched_bytes,
                    3 * BS + 100 + 2 * BS + 5000 + 1 + 3 * BS - 1 + 10);
  for (unsigned i = 0; i < fx->f.calls; i++)
    {
      assert_int_equal (fx->f.log_off[i], 0);
      assert_int_equal (fx->f.log_len[i], objects[fx->f.log_object[i]].size);
      assert_true (fx->f.log_object[i] != 1); /* the empty one */
    }
  /* Again from the cache, and an empty read does nothing. */
  read_ok (fx, 0, DEVICE);
  read_ok (fx, 100, 0);
  assert_int_equal (fx->f.calls, 6);
}

static void
test_read_every_boundary_pair (void **state)
{
  struct fixture *fx = *state;
  uint64_t b[3 * (DEVICE_BLOCKS + 1) + 3 * N (objects)];
  size_t n = boundaries (b, N (b));
  unsigned reads = 0;

  /* Every read from a boundary to a boundary up to 3 blocks on, so each
   * kind of boundary is crossed from every kind of start; and from each
   * boundary to the device's end.
   */
  for (size_t i = 0; i < n; i++)
    {
      for (size_t j = 0; j < n; j++)
        if (b[j] > b[i] && b[j] - b[i] <= 3 * BS)
          {
            read_ok (fx, b[i], b[j] - b[i]);
            reads++;
          }
      read_ok (fx, b[i], DEVICE - b[i]);
    }
  assert_true (reads > 1000);
}

static void
test_read_single_bytes_of_each_block (void **state)
{
  struct fixture *fx = *state;

  for (uint64_t blk = 0; blk < DEVICE_BLOCKS; blk++)
    {
      read_ok (fx, blk * BS, 1);
      read_ok (fx, blk * BS + 99, 2);
      read_ok (fx, blk * BS + BS - 1, 1);
    }
}

/* A failed fetch fails the read that needs it, with the fetcher's
 * message; reads that do not need it still succeed, and the next read
 * fetches again.
 */
static void
test_read_failed_fetch (void **state)
{
  struct fixture *fx = *state;
  unsigned char buf[3 * BS];
  struct s3bd_error err;

  fx->f.fail_object = 2;
  s3bd_error_clear (&err);
  assert_int_equal (map_read (&fx->idx, fx->c, buf, sizeof buf, 15 * BS, &err),
                    -1);
  assert_int_equal (err.code, S3BD_ESERVER);
  assert_non_null (strstr (err.msg, "GET object 2: injected failure"));
  read_ok (fx, 0, 16 * BS);
  read_ok (fx, 18 * BS, DEVICE - 18 * BS);
  fx->f.fail_object = UINT64_MAX;
  read_ok (fx, 15 * BS, sizeof buf);
}

/* ---- Extents ---- */

struct extent_log
{
  uint64_t off[256], len[256];
  bool hole[256];
  size_t n;
  size_t stop_at; /* return -1 from this call on */
};

static int
log_extent (void *arg, uint64_t offset, uint64_t len, bool hole)
{
  struct extent_log *l = arg;

  if (l->n == l->stop_at)
    return -1;
  assert_true (l->n < N (l->off));
  l->off[l->n] = offset;
  l->len[l->n] = len;
  l->hole[l->n] = hole;
  l->n++;
  return 0;
}

/* The extents of [off, off + len) tile it in order, and each byte's hole
 * flag is the map's.
 */
static void
extents_ok (struct fixture *fx, uint64_t off, uint64_t len)
{
  struct extent_log l = { .stop_at = SIZE_MAX };
  uint64_t at = off;

  assert_int_equal (map_extents (&fx->idx, off, len, log_extent, &l), 0);
  for (size_t i = 0; i < l.n; i++)
    {
      if (l.off[i] != at || l.len[i] == 0)
        fail_msg ("extents of %" PRIu64 "+%" PRIu64 ": #%zu is %" PRIu64
                  "+%" PRIu64 ", expected to start at %" PRIu64,
                  off, len, i, l.off[i], l.len[i], at);
      for (uint64_t b = l.off[i] / BS; b * BS < l.off[i] + l.len[i]; b++)
        if (fx->hole[b] != l.hole[i])
          fail_msg ("extents of %" PRIu64 "+%" PRIu64 ": #%zu %" PRIu64
                    "+%" PRIu64 " says hole=%d, block %" PRIu64 " is %s",
                    off, len, i, l.off[i], l.len[i], l.hole[i], b,
                    fx->hole[b] ? "a hole" : "mapped");
      at += l.len[i];
    }
  assert_int_equal (at, off + len);
}

static void
test_extents (void **state)
{
  struct fixture *fx = *state;
  uint64_t b[3 * (DEVICE_BLOCKS + 1) + 3 * N (objects)];
  size_t n = boundaries (b, N (b));
  struct extent_log l = { .stop_at = SIZE_MAX };
  uint64_t hole_bytes = 0;

  extents_ok (fx, 0, DEVICE);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      if (b[j] > b[i])
        extents_ok (fx, b[i], b[j] - b[i]);

  /* The holes of the whole device, exactly: 6-7, 9, 14-15, 22-29, 33-34. */
  assert_int_equal (map_extents (&fx->idx, 0, DEVICE, log_extent, &l), 0);
  for (size_t i = 0; i < l.n; i++)
    if (l.hole[i])
      hole_bytes += l.len[i];
  assert_int_equal (hole_bytes, (2 + 1 + 2 + 8 + 2) * BS);
  assert_int_equal (l.off[0], 0);
  assert_false (l.hole[0]);
  assert_false (l.hole[l.n - 1]); /* object 6 ends the device */

  /* A callback's -1 stops the walk and is returned. */
  l = (struct extent_log){ .stop_at = 3 };
  assert_int_equal (map_extents (&fx->idx, 0, DEVICE, log_extent, &l), -1);
  assert_int_equal (l.n, 3);
  /* An empty range calls nothing. */
  l = (struct extent_log){ .stop_at = 0 };
  assert_int_equal (map_extents (&fx->idx, 5 * BS, 0, log_extent, &l), 0);
}

/* ---- Prefetch ---- */

static void
assert_fetch (struct fixture *fx, unsigned i, uint64_t object, uint64_t off,
              uint64_t len)
{
  assert_true (i < fx->f.calls);
  if (fx->f.log_object[i] != object || fx->f.log_off[i] != off
      || fx->f.log_len[i] != len)
    fail_msg ("fetch #%u: object %" PRIu64 " %" PRIu64 "+%" PRIu64
              ", expected object %" PRIu64 " %" PRIu64 "+%" PRIu64,
              i, fx->f.log_object[i], fx->f.log_off[i], fx->f.log_len[i],
              object, off, len);
}

static void
test_prefetch_fetches_only_data (void **state)
{
  struct fixture *fx = *state;
  struct cache_stats s;

  /* Metadata, holes, and an object's tail past its size: nothing. */
  map_prefetch (&fx->idx, fx->c, 0, 10 * BS);
  map_prefetch (&fx->idx, fx->c, 13 * BS + 100, 3 * BS - 100);
  map_prefetch (&fx->idx, fx->c, 20 * BS, BS);
  map_prefetch (&fx->idx, fx->c, 21 * BS + 1, 9 * BS - 1);
  map_prefetch (&fx->idx, fx->c, 33 * BS, 2 * BS);
  map_prefetch (&fx->idx, fx->c, 35 * BS + 10, BS - 10);
  map_prefetch (&fx->idx, fx->c, DEVICE, 10 * BS); /* past the end */
  map_prefetch (&fx->idx, fx->c, 40 * BS, BS);
  assert_int_equal (fx->f.calls, 0);
  assert_int_equal (stats (fx).prefetched_chunks, 0);

  /* From inside object 0's second block into object 3's first: the
   * chunks of object 0 from there to its end (its last one short), all of
   * object 2, and object 3's first chunk only.
   */
  map_prefetch (&fx->idx, fx->c, 11 * BS + 100, 7 * BS);
  assert_int_equal (fx->f.calls, 3);
  assert_fetch (fx, 0, 0, BS, 2 * BS + 100);
  assert_fetch (fx, 1, 2, 0, 2 * BS);
  assert_fetch (fx, 2, 3, 0, BS);

  /* Cut at the device's end: object 6, 10 bytes. */
  map_prefetch (&fx->idx, fx->c, 34 * BS, 100 * BS);
  assert_int_equal (fx->f.calls, 4);
  assert_fetch (fx, 3, 6, 0, 10);

  /* The whole device: only what is not cached or in flight yet. */
  map_prefetch (&fx->idx, fx->c, 0, DEVICE);
  assert_int_equal (fx->f.calls, 8);
  assert_fetch (fx, 4, 0, 0, BS);
  assert_fetch (fx, 5, 3, BS, 5000 - BS);
  assert_fetch (fx, 6, 4, 0, 1);
  assert_fetch (fx, 7, 5, 0, 3 * BS - 1);
  s = stats (fx);
  assert_int_equal (s.prefetched_chunks, 4 + 2 + 2 + 1 + 3 + 1);
  assert_int_equal (s.misses, 0);

  /* Every byte now reads without another fetch. */
  read_ok (fx, 0, DEVICE);
  s = stats (fx);
  assert_int_equal (fx->f.calls, 8);
  assert_int_equal (s.misses, 0);
  assert_int_equal (s.prefetch_used, s.prefetched_chunks);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_read_whole_device, setup, teardown),
    cmocka_unit_test_setup_teardown (test_read_every_boundary_pair, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_read_single_bytes_of_each_block,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_read_failed_fetch, setup, teardown),
    cmocka_unit_test_setup_teardown (test_extents, setup, teardown),
    cmocka_unit_test_setup_teardown (test_prefetch_fetches_only_data, setup,
                                     teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
