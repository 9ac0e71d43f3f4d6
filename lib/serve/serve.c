/* s3bd: the data path without nbdkit.  See serve.h. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/prefetch.h"
#include "s3bd/serve.h"

/* Ranges one read may be advised; the policy gives one today. */
#define MAX_ADVICE 8

struct serve
{
  /* Read-only after serve_new. */
  const struct s3bd_index *idx;
  struct fetcher *fetcher;
  struct cache *cache;
  struct serve_config cfg;
  uint64_t size;
  struct map_source src; /* the cache, or the hydration before it */

  pthread_mutex_t ra_lock;
  /* protects: policy */
  struct prefetch *policy;
};

static int
source_read (void *arg, uint64_t object, uint64_t object_size, uint64_t off,
             uint64_t len, void *buf, struct s3bd_error *err)
{
  struct serve *s = arg;

  return hydrate_read (s->cfg.hydrate, s->cache, object, object_size, off, len,
                       buf, err);
}

static void
source_prefetch (void *arg, uint64_t object, uint64_t object_size, uint64_t off,
                 uint64_t len)
{
  struct serve *s = arg;

  hydrate_prefetch (s->cfg.hydrate, s->cache, object, object_size, off, len);
}

int
serve_new (const struct s3bd_index *idx, struct fetcher *fetcher,
           const struct serve_config *cfg, struct serve **out,
           struct s3bd_error *err)
{
  struct cache_config cc = { cfg->cache_size, cfg->chunk_size, cfg->max_fetch };
  struct prefetch_config pc = { 0 };
  struct serve *s;
  int e;

  s = calloc (1, sizeof *s);
  if (s == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  s->idx = idx;
  s->fetcher = fetcher;
  s->cfg = *cfg;
  s->size = idx->device_blocks * idx->block_size;
  e = pthread_mutex_init (&s->ra_lock, NULL);
  if (e)
    {
      free (s);
      return s3bd_fail (err, S3BD_ENOMEM, "readahead lock: %s", strerror (e));
    }
  if (cache_new (&cc, fetcher, &s->cache, err) == -1)
    goto fail;
  if (cfg->hydrate)
    s->src = (struct map_source){ source_read, source_prefetch, s };
  else
    s->src = map_cache_source (s->cache);
  pc.max_window = cfg->readahead_max;
  pc.min_window
      = cfg->readahead_max < (512 << 10) ? cfg->readahead_max : 512 << 10;
  pc.device_size = s->size;
  if (cfg->readahead_max)
    {
      s->policy = prefetch_new (&pc);
      if (s->policy == NULL)
        {
          s3bd_fail (err, S3BD_ENOMEM, "out of memory");
          goto fail;
        }
    }
  *out = s;
  return 0;

fail:
  cache_free (s->cache);
  pthread_mutex_destroy (&s->ra_lock);
  free (s);
  return -1;
}

void
serve_free (struct serve *s)
{
  if (s == NULL)
    return;
  prefetch_free (s->policy);
  cache_free (s->cache);
  pthread_mutex_destroy (&s->ra_lock);
  free (s);
}

uint64_t
serve_size (const struct serve *s)
{
  return s->size;
}

struct cache *
serve_cache (struct serve *s)
{
  return s->cache;
}

/* Readahead: ask the policy, map its device ranges to objects, start the
 * fetches.
 */
static void
advise (struct serve *s, uint64_t off, uint64_t len)
{
  struct prefetch_range r[MAX_ADVICE];
  uint64_t ahead, budget;
  size_t n;

  if (s->policy == NULL)
    return;
  ahead = cache_ahead_bytes (s->cache);
  budget
      = ahead < s->cfg.readahead_budget ? s->cfg.readahead_budget - ahead : 0;
  pthread_mutex_lock (&s->ra_lock);
  n = prefetch_advise (s->policy, off, len, budget, r, MAX_ADVICE);
  pthread_mutex_unlock (&s->ra_lock);
  for (size_t i = 0; i < n; i++)
    {
      if (s->cfg.verbose)
        s3bd_logf (s->cfg.log, S3BD_LOG_DEBUG,
                   "s3bd: readahead %" PRIu64 "+%" PRIu64, r[i].off, r[i].len);
      map_prefetch_from (s->idx, &s->src, r[i].off, r[i].len);
    }
}

int
serve_read (struct serve *s, void *buf, uint64_t count, uint64_t offset,
            struct s3bd_error *err)
{
  if (offset > s->size || count > s->size - offset)
    return s3bd_fail (err, S3BD_EINVAL,
                      "read %" PRIu64 "+%" PRIu64
                      " past the device's end (%" PRIu64 " bytes)",
                      offset, count, s->size);
  advise (s, offset, count);
  return map_read_from (s->idx, &s->src, buf, count, offset, err);
}

void
serve_prefetch (struct serve *s, uint64_t offset, uint64_t count)
{
  map_prefetch_from (s->idx, &s->src, offset, count);
}

int
serve_object_read (struct serve *s, uint64_t object, uint64_t off, uint64_t len,
                   void *buf, struct s3bd_error *err)
{
  const struct index_object *o = &s->idx->objects[object];

  if (off > o->size || len > o->size - off)
    return s3bd_fail (err, S3BD_EINVAL,
                      "read %" PRIu64 "+%" PRIu64 " past the end of s3://%s/%s"
                      " (%" PRIu64 " bytes)",
                      off, len, s->idx->buckets[o->bucket], o->key, o->size);
  if (len == 0)
    return 0;
  return s->src.read (s->src.arg, object, o->size, off, len, buf, err);
}

int
serve_object_locate (struct serve *s, uint64_t object, uint64_t off,
                     uint64_t len, int *fd, uint64_t *fd_off)
{
  const struct index_object *o = &s->idx->objects[object];

  if (s->cfg.hydrate == NULL || off > o->size || len > o->size - off)
    return -1;
  return hydrate_locate (s->cfg.hydrate, object, off, len, fd, fd_off);
}

void
serve_object_prefetch (struct serve *s, uint64_t object, uint64_t off,
                       uint64_t len)
{
  const struct index_object *o = &s->idx->objects[object];

  if (off >= o->size)
    return;
  if (len > o->size - off)
    len = o->size - off;
  s->src.prefetch (s->src.arg, object, o->size, off, len);
}

uint64_t
serve_ahead_bytes (struct serve *s)
{
  return cache_ahead_bytes (s->cache);
}

void
serve_get_stats (struct serve *s, struct fetch_stats *fs,
                 struct cache_stats *cs)
{
  cache_get_stats (s->cache, cs);
  fetcher_get_stats (s->fetcher, fs);
}

void
serve_stats_line (struct serve *s, char *buf, size_t n)
{
  struct cache_stats cs;
  struct fetch_stats fs;

  cache_get_stats (s->cache, &cs);
  fetcher_get_stats (s->fetcher, &fs);
  snprintf (buf, n,
            "stats: GETs %" PRIu64 " (retries %" PRIu64 ", failed %" PRIu64
            "), %" PRIu64 " bytes fetched, %" PRIu64
            " objects checked against their MD5 (%" PRIu64
            " mismatched); cache: hits %" PRIu64 ", misses %" PRIu64
            ", waits %" PRIu64 ", evictions %" PRIu64 ", %" PRIu64
            " bytes held; prefetch: %" PRIu64 " chunks, %" PRIu64
            " used, %" PRIu64 " wasted; errors %" PRIu64,
            fs.requests, fs.retries, fs.failures, fs.bytes_in, fs.verified,
            fs.mismatches, cs.hits, cs.misses, cs.waits, cs.evictions, cs.bytes,
            cs.prefetched_chunks, cs.prefetch_used, cs.prefetch_wasted,
            cs.errors);
  if (s->cfg.hydrate)
    {
      size_t len = strlen (buf);

      if (len < n)
        hydrate_stats_line (s->cfg.hydrate, buf + len, n - len);
    }
}
