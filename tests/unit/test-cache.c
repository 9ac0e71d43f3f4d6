/* s3bd: unit tests for lib/serve/cache.c: hit and miss counting, reads
 * across chunks and an object's short last chunk, one fetch for many
 * readers of a chunk, LRU eviction within the bound, failed fetches that
 * fail every waiter and leave nothing behind (but the chunks reported
 * final before the failure), prefetch used, wasted and
 * bounded, and a stress test of many threads verifying every byte while
 * fetches complete on other threads.
 *
 * Every object's bytes are a pure function of (object, offset), so the
 * fetcher needs no data and every read can be checked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3bd/error.h"
#include "s3bd/cache.h"
#include "chunk-pattern.h"

#define CS 4096u /* chunk size of every test */

/* ---- Seeing a reader wait ----
 *
 * Nothing the cache shows says that a reader is waiting for a fetch in
 * flight (waits is counted when the read ends), and a sleep before
 * completing the fetch only makes it likely.  So the test binary puts
 * itself in front of pthread_cond_wait (the cache is a static library:
 * its calls bind to this definition) and counts the calls made by
 * threads that asked to be counted.  With the fetch held, a counted
 * reader inside pthread_cond_wait has looked its chunk up, found it in
 * flight and is waiting for it: releasing the fetch then cannot turn its
 * read into a hit.
 */
static _Thread_local bool count_cond_waits;
static atomic_uint cond_waits_counted;

int
pthread_cond_wait (pthread_cond_t *cond, pthread_mutex_t *mutex)
{
  static int (*_Atomic real) (pthread_cond_t *, pthread_mutex_t *);
  int (*fn) (pthread_cond_t *, pthread_mutex_t *) = atomic_load (&real);

  if (fn == NULL)
    {
      *(void **)&fn = dlsym (RTLD_NEXT, "pthread_cond_wait");
      if (fn == NULL)
        abort ();
      atomic_store (&real, fn);
    }
  if (count_cond_waits)
    atomic_fetch_add (&cond_waits_counted, 1);
  return fn (cond, mutex);
}

/* ---- A test fetcher: synchronous, or from threads after a delay ---- */

struct job
{
  struct job *next;
  struct fetch_req *r;
  uint64_t object, off, len;
  const struct iovec *iov;
  int iovcnt;
  bool fail;
};

#define LOG_MAX 64

struct tfetcher
{
  struct fetcher base; /* first: the cache's pointer is ours */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  /* protects: everything below but the threads */
  struct job *head, *tail;
  bool stop;
  bool hold;            /* queue fetches, complete none yet */
  uint64_t fail_object; /* fetches of it fail; UINT64_MAX: none */
  unsigned delay_us;    /* before completing, in threads */
  unsigned jitter_us;   /* plus a random delay up to this */
  uint64_t rng;
  uint64_t calls;
  uint64_t log_off[LOG_MAX], log_len[LOG_MAX], log_object[LOG_MAX];
  unsigned bad; /* calls breaking the fetch contract */

  int nthreads; /* 0: synchronous */
  pthread_t threads[4];
};

static void test_fetch (struct fetcher *base, struct fetch_req *r);
static const struct fetch_ops test_ops
    = { .name = "test", .fetch = test_fetch };

static void
sleep_us (unsigned us)
{
  struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

  nanosleep (&ts, NULL);
}

static void
job_complete (struct job *j)
{
  struct s3bd_error e;
  uint64_t off = j->off;

  if (j->fail)
    {
      s3bd_error_clear (&e);
      s3bd_fail (&e, S3BD_ESERVER,
                 "GET object %" PRIu64 " bytes %" PRIu64 "-%" PRIu64
                 ": injected failure",
                 j->object, j->off, j->off + j->len - 1);
      fetch_req_done (j->r, &e);
      return;
    }
  for (int i = 0; i < j->iovcnt; i++)
    {
      pattern_fill_buf (j->object, off, j->iov[i].iov_base, j->iov[i].iov_len);
      off += j->iov[i].iov_len;
    }
  fetch_req_done (j->r, NULL);
}

static void *
fetcher_thread (void *arg)
{
  struct tfetcher *f = arg;

  pthread_mutex_lock (&f->lock);
  for (;;)
    {
      struct job *j;
      unsigned us;

      while ((f->head == NULL || f->hold) && !f->stop)
        pthread_cond_wait (&f->cond, &f->lock);
      /* Drains the queue before stopping: no fill is left in flight. */
      if (f->head == NULL)
        break;
      j = f->head;
      f->head = j->next;
      if (f->head == NULL)
        f->tail = NULL;
      us = f->delay_us;
      if (f->jitter_us)
        {
          f->rng = pattern_mix (f->rng);
          us += (unsigned)(f->rng % f->jitter_us);
        }
      pthread_mutex_unlock (&f->lock);
      if (us)
        sleep_us (us);
      job_complete (j);
      free (j);
      pthread_mutex_lock (&f->lock);
    }
  pthread_mutex_unlock (&f->lock);
  return NULL;
}

static void
test_fetch (struct fetcher *base, struct fetch_req *r)
{
  uint64_t object = r->object, off = r->off, len = r->len;
  const struct iovec *iov = r->iov;
  int iovcnt = r->iovcnt;
  struct tfetcher *f = (struct tfetcher *)base;
  struct job *j = calloc (1, sizeof *j);
  uint64_t sum = 0;

  if (j == NULL)
    abort ();
  for (int i = 0; i < iovcnt; i++)
    sum += iov[i].iov_len;
  j->r = r;
  j->object = object;
  j->off = off;
  j->len = len;
  j->iov = iov;
  j->iovcnt = iovcnt;

  pthread_mutex_lock (&f->lock);
  if (sum != len || len == 0 || off % CS != 0 || iovcnt < 1)
    f->bad++;
  if (f->calls < LOG_MAX)
    {
      f->log_object[f->calls] = object;
      f->log_off[f->calls] = off;
      f->log_len[f->calls] = len;
    }
  f->calls++;
  j->fail = object == f->fail_object;
  if (f->nthreads > 0)
    {
      if (f->tail)
        f->tail->next = j;
      else
        f->head = j;
      f->tail = j;
      pthread_cond_signal (&f->cond);
      pthread_mutex_unlock (&f->lock);
      return;
    }
  pthread_mutex_unlock (&f->lock);
  job_complete (j);
  free (j);
}

static void
fetcher_init (struct tfetcher *f, int nthreads, unsigned delay_us,
              unsigned jitter_us)
{
  memset (f, 0, sizeof *f);
  f->base.ops = &test_ops;
  pthread_mutex_init (&f->lock, NULL);
  pthread_cond_init (&f->cond, NULL);
  f->fail_object = UINT64_MAX;
  f->delay_us = delay_us;
  f->jitter_us = jitter_us;
  f->rng = 42;
  f->nthreads = nthreads;
  for (int i = 0; i < nthreads; i++)
    assert_int_equal (pthread_create (&f->threads[i], NULL, fetcher_thread, f),
                      0);
}

static void
fetcher_hold (struct tfetcher *f, bool hold)
{
  pthread_mutex_lock (&f->lock);
  f->hold = hold;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
}

static void
fetcher_set_fail (struct tfetcher *f, uint64_t object)
{
  pthread_mutex_lock (&f->lock);
  f->fail_object = object;
  pthread_mutex_unlock (&f->lock);
}

/* Completes every queued fetch, stops the threads, checks the contract. */
static void
fetcher_fini (struct tfetcher *f)
{
  pthread_mutex_lock (&f->lock);
  f->stop = true;
  pthread_cond_broadcast (&f->cond);
  pthread_mutex_unlock (&f->lock);
  for (int i = 0; i < f->nthreads; i++)
    pthread_join (f->threads[i], NULL);
  assert_int_equal (f->bad, 0);
  pthread_cond_destroy (&f->cond);
  pthread_mutex_destroy (&f->lock);
}

static struct cache *
new_cache (struct tfetcher *f, uint64_t max_chunks, uint64_t fetch_chunks)
{
  struct cache_config cfg = {
    .max_bytes = max_chunks * CS,
    .chunk_size = CS,
    .max_fetch = fetch_chunks * CS,
  };
  struct s3bd_error err;
  struct cache *c = NULL;

  s3bd_error_clear (&err);
  if (cache_new (&cfg, &f->base, &c, &err) == -1)
    fail_msg ("cache_new: %s", err.msg);
  return c;
}

static struct cache_stats
stats (struct cache *c)
{
  struct cache_stats s;

  cache_get_stats (c, &s);
  return s;
}

/* Reads and checks bytes [off, off + len) of the object. */
static void
read_ok (struct cache *c, uint64_t object, uint64_t size, uint64_t off,
         uint64_t len)
{
  struct s3bd_error err;
  unsigned char *buf = malloc (len ? len : 1);

  assert_non_null (buf);
  s3bd_error_clear (&err);
  if (cache_read (c, object, size, off, len, buf, &err) == -1)
    fail_msg ("read object %" PRIu64 " %" PRIu64 "+%" PRIu64 ": %s", object,
              off, len, err.msg);
  assert_int_equal (pattern_bad (object, off, buf, len), UINT64_MAX);
  free (buf);
}

/* ---- Tests ---- */

static void
test_config_is_checked (void **state)
{
  struct tfetcher f = { .base.ops = &test_ops };
  struct cache_config bad[] = {
    { 1 << 20, 3000, 1 << 20 },        /* not a power of two */
    { 1 << 20, 2048, 1 << 20 },        /* too small */
    { 1u << 30, 128 << 20, 1u << 30 }, /* too large */
    { 2048, 4096, 4096 },              /* no room for a chunk */
    { 1 << 20, 4096, 100 },            /* fetches less than a chunk */
  };
  struct s3bd_error err;
  struct cache *c;

  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    {
      s3bd_error_clear (&err);
      c = NULL;
      assert_int_equal (cache_new (&bad[i], &f.base, &c, &err), -1);
      assert_int_equal (err.code, S3BD_EINVAL);
      assert_null (c);
      assert_non_null (strstr (err.msg, "cache: "));
    }
}

static void
test_read_counts_hits_and_misses (void **state)
{
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 16, 4);

  read_ok (c, 1, 10 * CS, 10, 100);
  s = stats (c);
  assert_int_equal (s.misses, 1);
  assert_int_equal (s.hits, 0);
  assert_int_equal (s.fetches, 1);
  assert_int_equal (s.fetched_bytes, CS);
  assert_int_equal (s.bytes, CS);
  assert_int_equal (s.inflight_bytes, 0);

  read_ok (c, 1, 10 * CS, 10, 100);
  read_ok (c, 1, 10 * CS, 0, CS);
  read_ok (c, 1, 10 * CS, CS - 1, 1);
  s = stats (c);
  assert_int_equal (s.misses, 1);
  assert_int_equal (s.hits, 3);
  assert_int_equal (s.waits, 0);
  assert_int_equal (s.fetches, 1);

  /* The same offset of another object is another chunk. */
  read_ok (c, 2, 10 * CS, 10, 100);
  s = stats (c);
  assert_int_equal (s.misses, 2);
  assert_int_equal (s.fetches, 2);
  assert_int_equal (s.bytes, 2 * CS);
  assert_int_equal (s.prefetched_chunks, 0);
  assert_int_equal (s.evictions, 0);
  assert_int_equal (cache_ahead_bytes (c), 0);

  cache_free (c);
  fetcher_fini (&f);
}

static void
test_read_spans_chunks_and_short_last_chunk (void **state)
{
  const uint64_t size = 3 * CS + 100;
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;
  struct s3bd_error err;
  unsigned char b[8];

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 16, 2);

  /* Chunks 0-2: one fetch of the largest run, then the rest. */
  read_ok (c, 5, size, CS - 10, CS + 20);
  s = stats (c);
  assert_int_equal (s.fetches, 2);
  assert_int_equal (s.misses, 1);
  assert_int_equal (f.log_off[0], 0);
  assert_int_equal (f.log_len[0], 2 * CS);
  assert_int_equal (f.log_off[1], 2 * CS);
  assert_int_equal (f.log_len[1], CS);

  /* The last chunk is short, and its fetch stops at the object's end. */
  read_ok (c, 5, size, size - 50, 50);
  read_ok (c, 5, size, size - 1, 1);
  s = stats (c);
  assert_int_equal (s.fetches, 3);
  assert_int_equal (f.log_off[2], 3 * CS);
  assert_int_equal (f.log_len[2], 100);
  assert_int_equal (s.bytes, size);

  read_ok (c, 5, size, 0, size);
  s = stats (c);
  assert_int_equal (s.fetches, 3);
  assert_int_equal (s.hits, 2);

  /* An object smaller than a chunk. */
  read_ok (c, 6, 7, 0, 7);
  read_ok (c, 6, 7, 3, 4);
  s = stats (c);
  assert_int_equal (f.log_len[3], 7);
  assert_int_equal (s.bytes, size + 7);

  /* Reads past the end are refused; empty reads do nothing. */
  s3bd_error_clear (&err);
  assert_int_equal (cache_read (c, 5, size, size - 1, 2, b, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_int_equal (cache_read (c, 5, size, UINT64_MAX, 2, b, &err), -1);
  assert_int_equal (cache_read (c, 5, size, 2, UINT64_MAX, b, &err), -1);
  assert_int_equal (cache_read (c, 5, size, size, 0, b, &err), 0);
  assert_int_equal (stats (c).fetches, 4);

  cache_free (c);
  fetcher_fini (&f);
}

struct same_chunk
{
  struct cache *c;
  pthread_barrier_t *start;
  atomic_uint failures;
};

static void *
same_chunk_reader (void *arg)
{
  struct same_chunk *t = arg;
  unsigned char *buf = malloc (CS);
  struct s3bd_error err;

  pthread_barrier_wait (t->start);
  if (buf == NULL || cache_read (t->c, 7, 2 * CS, 0, CS, buf, &err) == -1
      || pattern_bad (7, 0, buf, CS) != UINT64_MAX)
    atomic_fetch_add (&t->failures, 1);
  free (buf);
  return NULL;
}

static void
test_16_readers_of_a_chunk_share_one_fetch (void **state)
{
  struct tfetcher f;
  pthread_barrier_t start;
  pthread_t th[16];
  struct same_chunk t = { .start = &start };
  struct cache_stats s;

  fetcher_init (&f, 1, 100 * 1000, 0);
  t.c = new_cache (&f, 16, 4);
  pthread_barrier_init (&start, NULL, 16);
  for (int i = 0; i < 16; i++)
    assert_int_equal (pthread_create (&th[i], NULL, same_chunk_reader, &t), 0);
  for (int i = 0; i < 16; i++)
    pthread_join (th[i], NULL);
  pthread_barrier_destroy (&start);

  s = stats (t.c);
  assert_int_equal (atomic_load (&t.failures), 0);
  assert_int_equal (s.fetches, 1);
  assert_int_equal (s.misses, 1);
  assert_int_equal (s.hits + s.waits, 15);
  assert_int_equal (s.bytes, CS);
  fetcher_fini (&f);
  cache_free (t.c);
}

struct own_object
{
  struct cache *c;
  uint64_t object, size;
  unsigned failures;
};

static void *
own_object_reader (void *arg)
{
  struct own_object *t = arg;
  unsigned char buf[1000];
  struct s3bd_error err;

  for (uint64_t off = 0; off < t->size; off += sizeof buf)
    {
      uint64_t len = t->size - off < sizeof buf ? t->size - off : sizeof buf;

      if (cache_read (t->c, t->object, t->size, off, len, buf, &err) == -1
          || pattern_bad (t->object, off, buf, len) != UINT64_MAX)
        t->failures++;
    }
  return NULL;
}

static void
test_8_readers_of_different_objects (void **state)
{
  struct tfetcher f;
  struct cache *c;
  pthread_t th[8];
  struct own_object t[8];
  struct cache_stats s;
  uint64_t bytes = 0, reads = 0;

  fetcher_init (&f, 2, 200, 300);
  c = new_cache (&f, 64, 4);
  for (int i = 0; i < 8; i++)
    {
      t[i] = (struct own_object){ c, 100 + (uint64_t)i,
                                  5 * CS + 7 * (uint64_t)i + 1, 0 };
      bytes += t[i].size;
      reads += (t[i].size + 999) / 1000;
      assert_int_equal (pthread_create (&th[i], NULL, own_object_reader, &t[i]),
                        0);
    }
  for (int i = 0; i < 8; i++)
    {
      pthread_join (th[i], NULL);
      assert_int_equal (t[i].failures, 0);
    }
  s = stats (c);
  /* Every chunk fetched once: the cache holds them all. */
  assert_int_equal (s.fetched_bytes, bytes);
  assert_int_equal (s.bytes, bytes);
  assert_int_equal (s.hits + s.misses + s.waits, reads);
  assert_int_equal (s.waits, 0);
  assert_int_equal (s.evictions, 0);
  fetcher_fini (&f);
  cache_free (c);
}

static void
test_eviction_is_lru_within_bound (void **state)
{
  const uint64_t size = 100 * CS;
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 4, 8);

  for (uint64_t i = 0; i < 4; i++)
    read_ok (c, 1, size, i * CS, 10);
  read_ok (c, 1, size, 0, 10); /* LRU order now 1 2 3 0 */
  s = stats (c);
  assert_int_equal (s.fetches, 4);
  assert_int_equal (s.bytes, 4 * CS);
  assert_int_equal (s.evictions, 0);

  read_ok (c, 1, size, 4 * CS, 10); /* evicts 1: 2 3 0 4 */
  s = stats (c);
  assert_int_equal (s.evictions, 1);
  assert_true (s.bytes <= 4 * CS);
  read_ok (c, 1, size, 0, 10);      /* hit: 2 3 4 0 */
  read_ok (c, 1, size, 3 * CS, 10); /* hit: 2 4 0 3 */
  assert_int_equal (stats (c).fetches, 5);
  read_ok (c, 1, size, 1 * CS, 10); /* miss, evicts 2: 4 0 3 1 */
  assert_int_equal (stats (c).fetches, 6);
  read_ok (c, 1, size, 0, 10);
  read_ok (c, 1, size, 3 * CS, 10);
  read_ok (c, 1, size, 4 * CS, 10);
  assert_int_equal (stats (c).fetches, 6);
  read_ok (c, 1, size, 2 * CS, 10); /* evicted before */
  s = stats (c);
  assert_int_equal (s.fetches, 7);
  assert_int_equal (s.evictions, 3);
  assert_true (s.bytes <= 4 * CS);

  /* A read larger than the cache still succeeds, and gives back what it
   * took past the bound once it is done.
   */
  read_ok (c, 2, size, 0, 6 * CS);
  s = stats (c);
  assert_true (s.bytes <= 4 * CS);
  assert_int_equal (s.inflight_bytes, 0);
  read_ok (c, 3, size, 100, 20 * CS);
  s = stats (c);
  assert_true (s.bytes <= 4 * CS);

  cache_free (c);
  fetcher_fini (&f);
}

struct failing
{
  struct cache *c;
  uint64_t off, len;
  pthread_barrier_t *start;
  int r;
  struct s3bd_error err;
};

static void *
failing_reader (void *arg)
{
  struct failing *t = arg;
  unsigned char *buf = malloc (t->len);

  s3bd_error_clear (&t->err);
  pthread_barrier_wait (t->start);
  t->r = cache_read (t->c, 9, 8 * CS, t->off, t->len, buf, &t->err);
  free (buf);
  return NULL;
}

static void
test_failed_fetch_fails_waiters_then_retry_works (void **state)
{
  struct tfetcher f;
  struct cache *c;
  pthread_barrier_t start;
  pthread_t th[4];
  struct failing t[4];
  struct cache_stats s;
  uint64_t waits;

  fetcher_init (&f, 1, 50 * 1000, 0);
  c = new_cache (&f, 16, 4);
  fetcher_set_fail (&f, 9);
  pthread_barrier_init (&start, NULL, 4);
  for (int i = 0; i < 4; i++)
    {
      /* Different ranges inside the same first fetch of chunks 0-3. */
      t[i] = (struct failing){
        .c = c, .off = (uint64_t)i * 100, .len = 3 * CS, .start = &start
      };
      assert_int_equal (pthread_create (&th[i], NULL, failing_reader, &t[i]),
                        0);
    }
  for (int i = 0; i < 4; i++)
    {
      pthread_join (th[i], NULL);
      assert_int_equal (t[i].r, -1);
      assert_int_equal (t[i].err.code, S3BD_ESERVER);
      assert_non_null (strstr (t[i].err.msg, "GET object 9 bytes 0-"));
      assert_non_null (strstr (t[i].err.msg, "injected failure"));
    }
  pthread_barrier_destroy (&start);
  s = stats (c);
  assert_true (s.fetches >= 1);
  assert_int_equal (s.errors, s.fetches);
  assert_int_equal (s.bytes, 0);
  assert_int_equal (s.inflight_bytes, 0);
  assert_int_equal (cache_ahead_bytes (c), 0);

  /* Nothing was kept: the next read fetches again and succeeds. */
  fetcher_set_fail (&f, UINT64_MAX);
  read_ok (c, 9, 8 * CS, 0, 8 * CS);
  s = stats (c);
  assert_int_equal (s.bytes, 8 * CS);
  assert_int_equal (s.errors, s.fetches - 2);

  /* A reader waiting for a failing prefetch fails too, with its message. */
  waits = s.waits;
  fetcher_set_fail (&f, 10);
  assert_int_equal (cache_prefetch (c, 10, 4 * CS, 0, 4 * CS), 4 * CS);
  {
    unsigned char buf[100];
    struct s3bd_error err;

    s3bd_error_clear (&err);
    assert_int_equal (cache_read (c, 10, 4 * CS, CS, 100, buf, &err), -1);
    assert_non_null (strstr (err.msg, "GET object 10 bytes 0-16383"));
  }
  fetcher_fini (&f);
  s = stats (c);
  assert_int_equal (s.waits, waits + 1);
  assert_int_equal (s.prefetched_chunks, 4);
  assert_int_equal (s.prefetch_used, 0);
  assert_int_equal (s.inflight_bytes, 0);
  assert_int_equal (s.bytes, 8 * CS);
  assert_int_equal (cache_ahead_bytes (c), 0);
  cache_free (c);
}

static void
test_failed_sync_fetch (void **state)
{
  struct tfetcher f;
  struct cache *c;
  struct s3bd_error err;
  unsigned char buf[3 * CS];

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 16, 4);
  read_ok (c, 9, 10 * CS, CS, 10); /* cached chunk 1 survives */
  fetcher_set_fail (&f, 9);
  s3bd_error_clear (&err);
  assert_int_equal (cache_read (c, 9, 10 * CS, 0, 3 * CS, buf, &err), -1);
  assert_non_null (strstr (err.msg, "injected failure"));
  assert_int_equal (stats (c).bytes, CS);
  fetcher_set_fail (&f, UINT64_MAX);
  read_ok (c, 9, 10 * CS, 0, 3 * CS);
  assert_int_equal (stats (c).bytes, 3 * CS);
  cache_free (c);
  fetcher_fini (&f);
}

/* ---- A fetcher driven by hand, for progress reports ---- */

struct manual
{
  struct fetcher base; /* first: the cache's pointer is ours */
  struct fetch_req *r;
  const struct iovec *iov;
  int iovcnt, calls;
  uint64_t object, off, last_off;
  bool complete; /* complete each fetch at once, with the pattern */
};

static void
manual_fetch (struct fetcher *base, struct fetch_req *r)
{
  struct manual *m = (struct manual *)base;
  uint64_t object = r->object, off = r->off;
  const struct iovec *iov = r->iov;
  int iovcnt = r->iovcnt;

  m->r = r;
  m->iov = iov;
  m->iovcnt = iovcnt;
  m->object = object;
  m->off = m->last_off = off;
  m->calls++;
  if (m->complete)
    {
      for (int i = 0; i < iovcnt; i++)
        {
          pattern_fill_buf (object, off, iov[i].iov_base, iov[i].iov_len);
          off += iov[i].iov_len;
        }
      fetch_req_done (r, NULL);
    }
}

/* Writes buffer i of the fetch in flight with the pattern. */
static const struct fetch_ops manual_ops
    = { .name = "manual", .fetch = manual_fetch };

static void
manual_write (struct manual *m, int i)
{
  pattern_fill_buf (m->object, m->off + (uint64_t)i * CS, m->iov[i].iov_base,
                    m->iov[i].iov_len);
}

struct range_reader
{
  struct cache *c;
  uint64_t object, size, off, len;
  int r;
};

static void *
range_reader (void *arg)
{
  struct range_reader *t = arg;
  unsigned char *buf = malloc (t->len);
  struct s3bd_error err;

  s3bd_error_clear (&err);
  t->r = buf == NULL
         || cache_read (t->c, t->object, t->size, t->off, t->len, buf, &err)
         || pattern_bad (t->object, t->off, buf, t->len) != UINT64_MAX;
  free (buf);
  return NULL;
}

/* Chunks reported final are READY before their fetch is done: readers of
 * them do not wait for the rest, a reader waiting for a later chunk wakes
 * when it is reported, and when the rest fails they stay cached and only
 * the rest is fetched again.
 */
static void
test_progress_makes_the_head_of_a_fetch_readable (void **state)
{
  struct manual m = { .base.ops = &manual_ops };
  struct cache_config cfg = {
    .max_bytes = 16 * CS,
    .chunk_size = CS,
    .max_fetch = 4 * CS,
  };
  struct range_reader t;
  struct s3bd_error err;
  struct cache *c = NULL;
  struct cache_stats s;
  pthread_t th;

  s3bd_error_clear (&err);
  assert_int_equal (cache_new (&cfg, &m.base, &c, &err), 0);
  assert_int_equal (cache_prefetch (c, 5, 4 * CS, 0, 4 * CS), 4 * CS);
  assert_int_equal (m.calls, 1);
  assert_int_equal (m.iovcnt, 4);

  manual_write (&m, 0);
  manual_write (&m, 1);
  fetch_req_progress (m.r, 2);
  s = stats (c);
  assert_int_equal (s.inflight_bytes, 2 * CS);
  assert_int_equal (cache_ahead_bytes (c), 4 * CS);
  read_ok (c, 5, 4 * CS, 0, 2 * CS);
  s = stats (c);
  assert_int_equal (s.hits, 1);
  assert_int_equal (s.prefetch_used, 2);
  assert_int_equal (cache_ahead_bytes (c), 2 * CS);

  /* A reader of chunk 2 waits, and wakes when chunk 2 alone is final. */
  t = (struct range_reader){
    .c = c, .object = 5, .size = 4 * CS, .off = 2 * CS + 7, .len = 100, .r = -1
  };
  assert_int_equal (pthread_create (&th, NULL, range_reader, &t), 0);
  manual_write (&m, 2);
  fetch_req_progress (m.r, 3);
  pthread_join (th, NULL);
  assert_int_equal (t.r, 0);

  /* The rest fails: chunks 0-2 stay, chunk 3 goes. */
  s3bd_fail (&err, S3BD_ESERVER, "injected failure");
  fetch_req_done (m.r, &err);
  s = stats (c);
  assert_int_equal (s.errors, 1);
  assert_int_equal (s.bytes, 3 * CS);
  assert_int_equal (s.inflight_bytes, 0);
  read_ok (c, 5, 4 * CS, 0, 3 * CS);
  assert_int_equal (m.calls, 1);
  m.complete = true;
  read_ok (c, 5, 4 * CS, 0, 4 * CS);
  assert_int_equal (m.calls, 2);
  assert_int_equal (m.last_off, 3 * CS);
  assert_int_equal (stats (c).bytes, 4 * CS);
  cache_free (c);
}

static void
test_prefetch_makes_reads_hits (void **state)
{
  const uint64_t size = 10 * CS + 5;
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 32, 4);

  /* Past the end is clipped: 11 chunks, in fetches of 4, 4, 3. */
  assert_int_equal (cache_prefetch (c, 3, size, 0, 100 * CS), size);
  s = stats (c);
  assert_int_equal (s.fetches, 3);
  assert_int_equal (s.prefetched_chunks, 11);
  assert_int_equal (f.log_len[0], 4 * CS);
  assert_int_equal (f.log_len[2], 2 * CS + 5);
  assert_int_equal (cache_ahead_bytes (c), size);
  assert_int_equal (cache_prefetch (c, 3, size, 0, size), 0);
  assert_int_equal (cache_prefetch (c, 3, size, size, 10), 0);

  read_ok (c, 3, size, 0, 2 * CS);
  s = stats (c);
  assert_int_equal (s.hits, 1);
  assert_int_equal (s.prefetch_used, 2);
  assert_int_equal (cache_ahead_bytes (c), size - 2 * CS);
  read_ok (c, 3, size, 0, size);
  s = stats (c);
  assert_int_equal (s.hits, 2);
  assert_int_equal (s.misses, 0);
  assert_int_equal (s.fetches, 3);
  assert_int_equal (s.prefetch_used, 11);
  assert_int_equal (s.prefetch_wasted, 0);
  assert_int_equal (cache_ahead_bytes (c), 0);

  /* Only the missing chunks are fetched. */
  read_ok (c, 4, size, 2 * CS, 10);
  assert_int_equal (cache_prefetch (c, 4, size, CS, 3 * CS), 2 * CS);
  s = stats (c);
  assert_int_equal (s.fetches, 6);
  assert_int_equal (f.log_off[4], CS);
  assert_int_equal (f.log_len[4], CS);
  assert_int_equal (f.log_off[5], 3 * CS);

  cache_free (c);
  fetcher_fini (&f);
}

struct whole_reader
{
  struct cache *c;
  uint64_t object, size;
  unsigned failures;
};

static void *
whole_reader (void *arg)
{
  struct whole_reader *t = arg;
  unsigned char *buf = malloc (t->size);
  struct s3bd_error err;

  if (buf == NULL
      || cache_read (t->c, t->object, t->size, 0, t->size, buf, &err) == -1
      || pattern_bad (t->object, 0, buf, t->size) != UINT64_MAX)
    t->failures++;
  free (buf);
  return NULL;
}

static void *
counted_whole_reader (void *arg)
{
  count_cond_waits = true;
  return whole_reader (arg);
}

static void
test_prefetch_in_flight_counts_and_is_shared (void **state)
{
  struct tfetcher f;
  struct whole_reader t = { .object = 3, .size = 8 * CS };
  pthread_t th;
  struct cache_stats s;
  unsigned ms = 0;

  fetcher_init (&f, 1, 0, 0);
  fetcher_hold (&f, true);
  t.c = new_cache (&f, 32, 4);
  assert_int_equal (cache_prefetch (t.c, 3, 8 * CS, 0, 8 * CS), 8 * CS);
  assert_int_equal (cache_ahead_bytes (t.c), 8 * CS);
  assert_int_equal (stats (t.c).inflight_bytes, 8 * CS);
  /* The reader waits for the prefetch instead of fetching again: the
   * fetches are held until it is certainly waiting.
   */
  atomic_store (&cond_waits_counted, 0);
  assert_int_equal (pthread_create (&th, NULL, counted_whole_reader, &t), 0);
  while (atomic_load (&cond_waits_counted) == 0)
    {
      if (ms++ == 10 * 1000)
        fail_msg ("the reader did not wait for the prefetch in 10 s");
      sleep_us (1000);
    }
  s = stats (t.c);
  assert_int_equal (s.fetches, 2);
  assert_int_equal (s.hits + s.misses + s.waits, 0); /* not done yet */
  fetcher_hold (&f, false);
  pthread_join (th, NULL);
  assert_int_equal (t.failures, 0);
  s = stats (t.c);
  assert_int_equal (s.fetches, 2);
  assert_int_equal (s.misses, 0);
  assert_int_equal (s.waits, 1);
  assert_int_equal (s.hits, 0);
  assert_int_equal (s.prefetch_used, 8);
  assert_int_equal (cache_ahead_bytes (t.c), 0);
  fetcher_fini (&f);
  cache_free (t.c);
}

static void
test_prefetch_evicted_unread_is_wasted (void **state)
{
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 8, 4);
  assert_int_equal (cache_prefetch (c, 1, 100 * CS, 0, 4 * CS), 4 * CS);
  read_ok (c, 1, 100 * CS, 0, 10); /* one of them used */
  for (uint64_t i = 0; i < 8; i++)
    read_ok (c, 2, 100 * CS, i * CS, 10);
  s = stats (c);
  assert_int_equal (s.prefetched_chunks, 4);
  assert_int_equal (s.prefetch_used, 1);
  assert_int_equal (s.prefetch_wasted, 3);
  assert_int_equal (s.evictions, 4);
  assert_true (s.bytes <= 8 * CS);
  assert_int_equal (cache_ahead_bytes (c), 0);
  cache_free (c);
  fetcher_fini (&f);
}

static void
test_prefetch_stays_within_bound (void **state)
{
  struct tfetcher f;
  struct cache *c;
  struct cache_stats s;

  fetcher_init (&f, 0, 0, 0);
  c = new_cache (&f, 8, 4);
  assert_int_equal (cache_prefetch (c, 1, 100 * CS, 0, 20 * CS), 8 * CS);
  s = stats (c);
  assert_int_equal (s.bytes, 8 * CS);
  /* Unread chunks fetched ahead are not pushed out for more of the same. */
  assert_int_equal (cache_prefetch (c, 2, 100 * CS, 0, 20 * CS), 0);
  assert_int_equal (stats (c).evictions, 0);
  /* Chunks already read are. */
  read_ok (c, 1, 100 * CS, 0, 2 * CS);
  assert_int_equal (cache_prefetch (c, 2, 100 * CS, 0, 20 * CS), 2 * CS);
  s = stats (c);
  assert_int_equal (s.bytes, 8 * CS);
  assert_int_equal (s.evictions, 2);
  assert_int_equal (s.prefetch_wasted, 0);
  assert_int_equal (cache_ahead_bytes (c), 8 * CS);
  cache_free (c);
  fetcher_fini (&f);

  /* Fetches in flight count against the bound too. */
  fetcher_init (&f, 1, 0, 0);
  fetcher_hold (&f, true);
  c = new_cache (&f, 8, 3);
  assert_int_equal (cache_prefetch (c, 1, 100 * CS, 0, 20 * CS), 8 * CS);
  s = stats (c);
  assert_int_equal (s.inflight_bytes, 8 * CS);
  assert_int_equal (s.fetches, 3); /* 3 + 3 + the 2 that fit */
  assert_int_equal (s.bytes, 8 * CS);
  assert_int_equal (cache_prefetch (c, 2, 100 * CS, 0, 20 * CS), 0);
  fetcher_fini (&f);
  s = stats (c);
  assert_int_equal (s.inflight_bytes, 0);
  assert_int_equal (cache_ahead_bytes (c), 8 * CS);
  cache_free (c);
}

/* ---- Stress ---- */

#define STRESS_OBJECTS 64
#define STRESS_THREADS 8
#define STRESS_OPS 2000
#define STRESS_FAILING 13 /* reads of this object must fail */

static uint64_t
stress_size (uint64_t object)
{
  return (object * 7919 * 37) % (12 * CS) + 1;
}

struct stresser
{
  struct cache *c;
  uint64_t seed;
  uint64_t reads;
  unsigned failures;
  char first_failure[1024]; /* room for a whole s3bd_error msg */
};

static void
stress_fail (struct stresser *t, const char *what, uint64_t object,
             uint64_t off, uint64_t len)
{
  if (t->failures++ == 0)
    snprintf (t->first_failure, sizeof t->first_failure,
              "%s: object %" PRIu64 " %" PRIu64 "+%" PRIu64, what, object, off,
              len);
}

static void *
stresser_thread (void *arg)
{
  struct stresser *t = arg;
  unsigned char *buf = malloc (3 * CS);
  uint64_t rng = t->seed;

  if (buf == NULL)
    abort ();
  for (int i = 0; i < STRESS_OPS; i++)
    {
      uint64_t object, size, off, len, r;
      struct s3bd_error err;

      /* Half the reads go to a few hot objects: hits and shared fetches
       * race with eviction, not only misses.
       */
      rng = pattern_mix (rng);
      object = (rng >> 1) % (rng & 1 ? 4 : STRESS_OBJECTS);
      size = stress_size (object);
      rng = pattern_mix (rng);
      off = rng % size;
      rng = pattern_mix (rng);
      len = rng % (3 * CS) + 1;
      if (len > size - off)
        len = size - off;
      rng = pattern_mix (rng);
      if (rng % 10 == 0)
        {
          r = cache_prefetch (t->c, object, size, off, len);
          if (r > len + 2 * CS)
            stress_fail (t, "prefetch too much", object, off, len);
          continue;
        }
      t->reads++;
      s3bd_error_clear (&err);
      r = (uint64_t)cache_read (t->c, object, size, off, len, buf, &err);
      if (object == STRESS_FAILING)
        {
          if (r != (uint64_t)-1 || err.code != S3BD_ESERVER
              || strstr (err.msg, "GET object 13 ") == NULL)
            stress_fail (t, "read did not fail", object, off, len);
        }
      else if (r != 0)
        stress_fail (t, err.msg, object, off, len);
      else if (pattern_bad (object, off, buf, len) != UINT64_MAX)
        stress_fail (t, "wrong bytes", object, off, len);
    }
  free (buf);
  return NULL;
}

static void
test_stress_many_threads_small_cache (void **state)
{
  struct tfetcher f;
  struct cache *c;
  pthread_t th[STRESS_THREADS];
  struct stresser t[STRESS_THREADS];
  struct cache_stats s;
  uint64_t reads = 0;

  fetcher_init (&f, 2, 0, 200);
  fetcher_set_fail (&f, STRESS_FAILING);
  c = new_cache (&f, 16, 4);
  for (int i = 0; i < STRESS_THREADS; i++)
    {
      t[i] = (struct stresser){ .c = c, .seed = 1000 + (uint64_t)i };
      assert_int_equal (pthread_create (&th[i], NULL, stresser_thread, &t[i]),
                        0);
    }
  for (int i = 0; i < STRESS_THREADS; i++)
    {
      pthread_join (th[i], NULL);
      if (t[i].failures)
        fail_msg ("thread %d: %u failures, first %s", i, t[i].failures,
                  t[i].first_failure);
      reads += t[i].reads;
    }
  fetcher_fini (&f); /* completes the prefetches still queued */

  s = stats (c);
  print_message (
      "stress: %" PRIu64 " reads: %" PRIu64 " hits %" PRIu64 " misses %" PRIu64
      " waits, %" PRIu64 " fetches, %" PRIu64 " evictions, prefetched %" PRIu64
      " used %" PRIu64 " wasted %" PRIu64 ", %" PRIu64 " errors\n",
      reads, s.hits, s.misses, s.waits, s.fetches, s.evictions,
      s.prefetched_chunks, s.prefetch_used, s.prefetch_wasted, s.errors);
  assert_int_equal (s.hits + s.misses + s.waits, reads);
  assert_int_equal (s.inflight_bytes, 0);
  assert_true (s.bytes <= 16 * CS);
  assert_true (s.prefetch_used + s.prefetch_wasted <= s.prefetched_chunks);
  assert_true (s.errors > 0 && s.errors < s.fetches);
  assert_true (s.evictions > 0);
  assert_true (cache_ahead_bytes (c) <= s.bytes);
  assert_int_equal (f.calls, s.fetches);
  cache_free (c);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_config_is_checked),
    cmocka_unit_test (test_read_counts_hits_and_misses),
    cmocka_unit_test (test_read_spans_chunks_and_short_last_chunk),
    cmocka_unit_test (test_16_readers_of_a_chunk_share_one_fetch),
    cmocka_unit_test (test_8_readers_of_different_objects),
    cmocka_unit_test (test_eviction_is_lru_within_bound),
    cmocka_unit_test (test_failed_fetch_fails_waiters_then_retry_works),
    cmocka_unit_test (test_failed_sync_fetch),
    cmocka_unit_test (test_progress_makes_the_head_of_a_fetch_readable),
    cmocka_unit_test (test_prefetch_makes_reads_hits),
    cmocka_unit_test (test_prefetch_in_flight_counts_and_is_shared),
    cmocka_unit_test (test_prefetch_evicted_unread_is_wasted),
    cmocka_unit_test (test_prefetch_stays_within_bound),
    cmocka_unit_test (test_stress_many_threads_small_cache),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
