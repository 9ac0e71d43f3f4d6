/* nbdkit-s3bd-plugin: the fetch worker.
 *
 * One thread runs the S3 engine (a curl multi handle with up to
 * max-requests GETs in flight on kept-alive connections).  The cache asks
 * for a run of chunks through worker_fetch, from any nbdkit thread; the
 * GET is submitted to the engine and its body lands straight in the
 * chunks' buffers.  As each chunk's bytes are all in, and at the end, the
 * engine calls back in this thread, which reports to the cache, which
 * wakes the readers.  A failed GET is logged here, once,
 * with the key and range; the readers only return EIO.
 *
 * Once a second the thread also rewrites stats-file, when one is set.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "plugin.h"
#include "prefetch.h"

struct fetch {
  struct s3_request req;
  struct cache *cache;
  struct cache_fill *fill;
  int iovcnt;
  struct iovec iov[];            /* copied: the cache's may not outlive
                                    the call */
};

static struct s3_engine *engine;
static pthread_t thread;
static bool started;
static atomic_bool stopping;
static const char *stats_path;

static void
fetch_done (struct s3_request *r, void *arg)
{
  struct fetch *f = arg;

  if (r->rc)
    nbdkit_error ("%s", r->err.msg);
  else if (s3bd_debug_verbose)
    nbdkit_debug ("s3bd: GET %s bytes %" PRIu64 "+%" PRIu64 " done",
                  r->key, r->range_off, r->range_len);
  cache_fill_done (f->cache, f->fill, r->rc ? &r->err : NULL);
  s3_request_release (r);
  free (f);
}

/* The head of a GET is in: its readers need not wait for the tail. */
static void
fetch_progress (struct s3_request *r, int n, void *arg)
{
  struct fetch *f = arg;

  cache_fill_progress (f->cache, f->fill, n);
}

void
worker_fetch (void *arg, struct cache *c, struct cache_fill *fill,
              uint64_t object, uint64_t off, uint64_t len,
              const struct iovec *iov, int iovcnt)
{
  const struct index_object *o = &s3bd.idx.objects[object];
  struct fetch *f;
  struct s3bd_error err = { 0 };

  if (engine == NULL || atomic_load (&stopping))
    {
      s3bd_fail (&err, S3BD_EIO, "GET s3://%s/%s: the plugin is shutting "
                 "down", s3bd.idx.buckets[o->bucket], o->key);
      cache_fill_done (c, fill, &err);
      return;
    }
  f = malloc (sizeof *f + (size_t) iovcnt * sizeof *iov);
  if (f == NULL)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "GET s3://%s/%s: out of memory",
                 s3bd.idx.buckets[o->bucket], o->key);
      nbdkit_error ("%s", err.msg);
      cache_fill_done (c, fill, &err);
      return;
    }
  f->cache = c;
  f->fill = fill;
  f->iovcnt = iovcnt;
  memcpy (f->iov, iov, (size_t) iovcnt * sizeof *iov);
  s3_request_get_range (&f->req, s3bd.idx.buckets[o->bucket], o->key, off,
                        len, o->etag, NULL);
  f->req.buf_len = 0;
  f->req.iov = f->iov;
  f->req.iovcnt = iovcnt;
  f->req.done = fetch_done;
  f->req.progress = fetch_progress;
  f->req.arg = f;
  s3_engine_submit (engine, &f->req);
}

void
stats_line (char *buf, size_t n)
{
  struct cache_stats cs;
  struct s3_stats ss = { 0 };

  cache_get_stats (s3bd.cache, &cs);
  if (engine)
    s3_engine_stats (engine, &ss);
  snprintf (buf, n,
            "stats: GETs %" PRIu64 " (retries %" PRIu64 ", failed %" PRIu64
            "), %" PRIu64 " bytes fetched; cache: hits %" PRIu64 ", misses %"
            PRIu64 ", waits %" PRIu64 ", evictions %" PRIu64 ", %" PRIu64
            " bytes held; prefetch: %" PRIu64 " chunks, %" PRIu64 " used, %"
            PRIu64 " wasted; errors %" PRIu64,
            ss.requests, ss.retries, ss.failures, ss.bytes_in, cs.hits,
            cs.misses, cs.waits, cs.evictions, cs.bytes,
            cs.prefetched_chunks, cs.prefetch_used, cs.prefetch_wasted,
            cs.errors);
}

static void
write_stats (void)
{
  char line[1024], tmp[4096];
  FILE *f;

  stats_line (line, sizeof line);
  snprintf (tmp, sizeof tmp, "%s.tmp", stats_path);
  f = fopen (tmp, "w");
  if (f == NULL)
    return;
  fprintf (f, "%s\n", line);
  if (fclose (f) == 0)
    rename (tmp, stats_path);
}

static void *
worker_main (void *arg)
{
  time_t last = 0;

  while (!atomic_load (&stopping))
    {
      s3_engine_run (engine, 1000);
      if (stats_path && time (NULL) != last)
        {
          last = time (NULL);
          write_stats ();
        }
    }
  /* Let what is in flight finish so that no reader waits for ever and no
   * buffer is written after the cache is gone.
   */
  while (s3_engine_run (engine, 1000) > 0)
    ;
  return NULL;
}

int
worker_start (struct s3_client *c, unsigned max_requests,
              const char *stats_file, struct s3bd_error *err)
{
  int e;

  stats_path = stats_file;
  if (s3_engine_new (c, max_requests, &engine, err) == -1)
    return -1;
  e = pthread_create (&thread, NULL, worker_main, NULL);
  if (e)
    {
      s3_engine_free (engine);
      engine = NULL;
      return s3bd_fail (err, S3BD_ENOMEM, "cannot start the fetch thread: "
                        "%s", strerror (e));
    }
  started = true;
  return 0;
}

void
worker_stop (void)
{
  if (!started)
    return;
  atomic_store (&stopping, true);
  s3_engine_wakeup (engine);
  pthread_join (thread, NULL);
  if (stats_path)
    write_stats ();
  started = false;
}

void
worker_free (void)
{
  s3_engine_free (engine);
  engine = NULL;
}
