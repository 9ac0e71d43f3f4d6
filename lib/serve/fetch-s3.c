/* s3bd: the S3 fetch backend.
 *
 * One thread runs an S3 engine (a curl multi handle with up to
 * max_requests GETs in flight on kept-alive connections).  The cache asks
 * for a run of chunks through fetch, from any thread; the GET, with
 * If-Match: <the ETag in the index>, is submitted to the engine and its
 * body lands straight in the chunks' buffers.  As each chunk's bytes are
 * all in, and at the end, the engine calls back in its thread, which
 * reports to the cache, which wakes the readers.  A failed GET is logged
 * here, once, with the key and range; the readers only see its message.
 *
 * Lifetimes: a struct s3_fetch lives from fetch until its GET's done
 * callback; stop lets every GET in flight end before it returns, so that
 * no buffer is written after the cache is gone.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/cache.h"
#include "s3bd/fetch.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"

struct s3_fetcher
{
  struct fetcher base; /* first: the cache's pointer is ours */
  struct fetch_s3_config cfg;
  struct s3_engine *engine;
  pthread_t thread;
  bool started;
  atomic_bool stopping;
};

/* One GET in flight. */
struct s3_fetch
{
  struct s3_request req;
  struct s3_fetcher *f;
  struct cache *cache;
  struct cache_fill *fill;
  int iovcnt;
  struct iovec iov[]; /* copied: the cache's may not outlive the
                         call */
};

static void
get_done (struct s3_request *r, void *arg)
{
  struct s3_fetch *g = arg;

  if (r->rc)
    s3bd_logf (g->f->cfg.log, S3BD_LOG_ERROR, "%s", r->err.msg);
  else if (g->f->cfg.verbose)
    s3bd_logf (g->f->cfg.log, S3BD_LOG_DEBUG,
               "s3bd: GET %s bytes %" PRIu64 "+%" PRIu64 " done", r->key,
               r->range_off, r->range_len);
  cache_fill_done (g->cache, g->fill, r->rc ? &r->err : NULL);
  s3_request_release (r);
  free (g);
}

/* The head of a GET is in: its readers need not wait for the tail. */
static void
get_progress (struct s3_request *r, int n, void *arg)
{
  struct s3_fetch *g = arg;

  cache_fill_progress (g->cache, g->fill, n);
}

static void
s3_fetch (struct fetcher *base, struct cache *c, struct cache_fill *fill,
          uint64_t object, uint64_t off, uint64_t len, const struct iovec *iov,
          int iovcnt)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;
  const struct s3bd_index *idx = f->cfg.idx;
  const struct index_object *o = &idx->objects[object];
  const char *bucket = idx->buckets[o->bucket];
  struct s3_fetch *g;
  struct s3bd_error err = { 0 };

  if (!f->started || atomic_load (&f->stopping))
    {
      s3bd_fail (&err, S3BD_EIO, "GET s3://%s/%s: the fetcher is %s", bucket,
                 o->key, f->started ? "shutting down" : "not started");
      cache_fill_done (c, fill, &err);
      return;
    }
  g = malloc (sizeof *g + (size_t)iovcnt * sizeof *iov);
  if (g == NULL)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "GET s3://%s/%s: out of memory", bucket,
                 o->key);
      s3bd_logf (f->cfg.log, S3BD_LOG_ERROR, "%s", err.msg);
      cache_fill_done (c, fill, &err);
      return;
    }
  g->f = f;
  g->cache = c;
  g->fill = fill;
  g->iovcnt = iovcnt;
  memcpy (g->iov, iov, (size_t)iovcnt * sizeof *iov);
  s3_request_get_range (&g->req, bucket, o->key, off, len, o->etag, NULL);
  g->req.expect_size = o->size;
  g->req.buf_len = 0;
  g->req.iov = g->iov;
  g->req.iovcnt = iovcnt;
  g->req.done = get_done;
  g->req.progress = get_progress;
  g->req.arg = g;
  s3_engine_submit (f->engine, &g->req);
}

static void *
engine_thread (void *arg)
{
  struct s3_fetcher *f = arg;

  while (!atomic_load (&f->stopping))
    s3_engine_run (f->engine, 1000);
  /* Let what is in flight finish so that no reader waits for ever and no
   * buffer is written after the cache is gone.
   */
  while (s3_engine_run (f->engine, 1000) > 0)
    ;
  return NULL;
}

static int
s3_start (struct fetcher *base, struct s3bd_error *err)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;
  int e;

  if (f->started)
    return 0;
  e = pthread_create (&f->thread, NULL, engine_thread, f);
  if (e)
    return s3bd_fail (err, S3BD_ENOMEM, "cannot start the fetch thread: %s",
                      strerror (e));
  f->started = true;
  return 0;
}

static void
s3_stop (struct fetcher *base)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;

  if (!f->started || atomic_exchange (&f->stopping, true))
    return;
  s3_engine_wakeup (f->engine);
  pthread_join (f->thread, NULL);
}

static void
s3_get_stats (struct fetcher *base, struct fetch_stats *s)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;
  struct s3_stats ss;

  s3_engine_stats (f->engine, &ss);
  s->requests = ss.requests;
  s->retries = ss.retries;
  s->failures = ss.failures;
  s->bytes_in = ss.bytes_in;
}

static void
s3_free (struct fetcher *base)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;

  s3_stop (base);
  s3_engine_free (f->engine);
  free (f);
}

static const struct fetch_ops s3_ops = {
  .name = "s3",
  .fetch = s3_fetch,
  .start = s3_start,
  .stop = s3_stop,
  .get_stats = s3_get_stats,
  .free = s3_free,
};

int
fetch_s3_new (const struct fetch_s3_config *cfg, struct fetcher **out,
              struct s3bd_error *err)
{
  struct s3_fetcher *f;

  if (cfg->client == NULL || cfg->idx == NULL || cfg->max_requests == 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "fetch-s3: a client, an index and max_requests >= 1 "
                      "are needed");
  f = calloc (1, sizeof *f);
  if (f == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "fetch-s3: out of memory");
  f->base.ops = &s3_ops;
  f->cfg = *cfg;
  atomic_init (&f->stopping, false);
  if (s3_engine_new (cfg->client, cfg->max_requests, &f->engine, err) == -1)
    {
      free (f);
      return -1;
    }
  *out = &f->base;
  return 0;
}
