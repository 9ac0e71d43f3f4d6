/* s3bd: the S3 fetch backend.
 *
 * One thread runs an S3 engine (a curl multi handle with up to
 * max_requests GETs in flight on kept-alive connections).  The cache (or
 * the hydration fill) asks for a range through fetch, from any thread;
 * the GET, with If-Match: <the ETag in the index>, is submitted to the
 * engine and its body lands straight in the asker's buffers.  As each
 * buffer's bytes are all in, and at the end, the engine calls back in
 * its thread, which reports to the asker (the cache wakes its readers).
 * A failed GET is logged here, once, with the key and range; the readers
 * only see its message.
 *
 * Lifetimes: a struct s3_fetch lives from fetch until its GET's done
 * callback; stop lets every GET in flight end before it returns, so that
 * no buffer is written after its asker is gone.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "s3bd/fetch.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"

/* GETs of a whole object whose bytes do not match its ETag's MD5 before
 * it fails.
 */
#define MD5_TRIES 5

struct s3_fetcher
{
  struct fetcher base; /* first: the asker's pointer is ours */
  struct fetch_s3_config cfg;
  struct s3_engine *engine;
  pthread_t thread;
  bool started;
  atomic_bool stopping;
  /* Per bucket: its ETags proved not to be MD5s of the bytes (SSE-KMS,
   * SSE-C), so its objects are not checked.
   */
  atomic_bool *not_md5;
  atomic_uint_fast64_t verified, mismatches;
};

/* One GET in flight. */
struct s3_fetch
{
  struct s3_request req;
  struct s3_fetcher *f;
  struct fetch_req *r; /* the asker's */
  bool verify;         /* check the bytes against the ETag's MD5 */
  int md5_tries;
  unsigned char first_md5[16]; /* of the first GET that did not match */
};

static void
iov_md5 (const struct iovec *iov, int n, unsigned char md5[16])
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned len = 0;

  /* Only allocation can fail; without a digest nothing can be checked. */
  if (ctx == NULL || EVP_DigestInit_ex (ctx, EVP_md5 (), NULL) != 1)
    abort ();
  for (int i = 0; i < n; i++)
    EVP_DigestUpdate (ctx, iov[i].iov_base, iov[i].iov_len);
  EVP_DigestFinal_ex (ctx, md5, &len);
  EVP_MD_CTX_free (ctx);
}

static void submit (struct s3_fetch *g);

/* A whole object in: its bytes against its ETag's MD5.  true when the
 * GET is over (matched, or not checkable), false when it was sent again.
 * Bytes that do not match are sent for again; the same wrong digest
 * twice means the ETag is not an MD5 of the bytes (SSE-KMS or SSE-C
 * objects), and the bucket is not checked again.
 */
static bool
check_md5 (struct s3_fetch *g)
{
  struct s3_fetcher *f = g->f;
  const struct index_object *o = &f->cfg.idx->objects[g->r->object];
  unsigned char want[16], got[16];

  if (!index_etag_md5 (o->etag, want) || atomic_load (&f->not_md5[o->bucket]))
    return true;
  iov_md5 (g->r->iov, g->r->iovcnt, got);
  if (memcmp (want, got, 16) == 0)
    {
      atomic_fetch_add (&f->verified, 1);
      return true;
    }
  atomic_fetch_add (&f->mismatches, 1);
  if (g->md5_tries > 0 && memcmp (g->first_md5, got, 16) == 0)
    {
      if (!atomic_exchange (&f->not_md5[o->bucket], true))
        s3bd_logf (f->cfg.log, S3BD_LOG_INFO,
                   "s3bd: s3://%s/%s: the same bytes twice, and not the MD5 "
                   "of its ETag: this bucket's ETags are not MD5s (SSE-KMS "
                   "or SSE-C?), its objects are not checked",
                   f->cfg.idx->buckets[o->bucket], o->key);
      return true;
    }
  if (g->md5_tries == 0)
    memcpy (g->first_md5, got, 16);
  if (++g->md5_tries >= MD5_TRIES)
    {
      g->req.rc = s3bd_fail (&g->req.err, S3BD_EPROTO,
                             "GET s3://%s/%s: the bytes did not match the "
                             "ETag's MD5 in %d GETs (corrupted on the way)",
                             f->cfg.idx->buckets[o->bucket], o->key, MD5_TRIES);
      return true;
    }
  s3bd_logf (f->cfg.log, S3BD_LOG_ERROR,
             "s3bd: GET s3://%s/%s: the bytes do not match the ETag's MD5 "
             "(corrupted on the way): fetching it again",
             f->cfg.idx->buckets[o->bucket], o->key);
  s3_request_release (&g->req);
  submit (g);
  return false;
}

static void
get_done (struct s3_request *r, void *arg)
{
  struct s3_fetch *g = arg;

  if (r->rc == 0 && g->verify && !check_md5 (g))
    return;
  if (r->rc)
    s3bd_logf (g->f->cfg.log, S3BD_LOG_ERROR, "%s", r->err.msg);
  else if (g->f->cfg.verbose)
    s3bd_logf (g->f->cfg.log, S3BD_LOG_DEBUG,
               "s3bd: GET %s bytes %" PRIu64 "+%" PRIu64 " done", r->key,
               r->range_off, r->range_len);
  fetch_req_done (g->r, r->rc ? &r->err : NULL);
  s3_request_release (r);
  free (g);
}

/* The head of a GET is in: its readers need not wait for the tail. */
static void
get_progress (struct s3_request *r, int n, void *arg)
{
  struct s3_fetch *g = arg;

  fetch_req_progress (g->r, n);
}

static void
s3_fetch (struct fetcher *base, struct fetch_req *fr)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;
  const struct s3bd_index *idx = f->cfg.idx;
  const struct index_object *o = &idx->objects[fr->object];
  const char *bucket = idx->buckets[o->bucket];
  struct s3_fetch *g;
  struct s3bd_error err = { 0 };

  if (!f->started || atomic_load (&f->stopping))
    {
      s3bd_fail (&err, S3BD_EIO, "GET s3://%s/%s: the fetcher is %s", bucket,
                 o->key, f->started ? "shutting down" : "not started");
      fetch_req_done (fr, &err);
      return;
    }
  g = malloc (sizeof *g);
  if (g == NULL)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "GET s3://%s/%s: out of memory", bucket,
                 o->key);
      s3bd_logf (f->cfg.log, S3BD_LOG_ERROR, "%s", err.msg);
      fetch_req_done (fr, &err);
      return;
    }
  g->f = f;
  g->r = fr;
  g->md5_tries = 0;
  g->verify = fr->off == 0 && fr->len == o->size && o->size > 0
              && (fr->verify || o->size <= f->cfg.verify_max);
  submit (g);
}

static void
submit (struct s3_fetch *g)
{
  const struct s3bd_index *idx = g->f->cfg.idx;
  const struct index_object *o = &idx->objects[g->r->object];

  s3_request_get_range (&g->req, idx->buckets[o->bucket], o->key, g->r->off,
                        g->r->len, o->etag, NULL);
  g->req.expect_size = o->size;
  g->req.buf_len = 0;
  g->req.iov = g->r->iov;
  g->req.iovcnt = g->r->iovcnt;
  g->req.done = get_done;
  /* Bytes to be checked go to the asker only once they are. */
  g->req.progress = g->verify ? NULL : get_progress;
  g->req.arg = g;
  s3_engine_submit (g->f->engine, &g->req);
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
  s->verified = atomic_load (&f->verified);
  s->mismatches = atomic_load (&f->mismatches);
}

static void
s3_free (struct fetcher *base)
{
  struct s3_fetcher *f = (struct s3_fetcher *)base;

  s3_stop (base);
  s3_engine_free (f->engine);
  free (f->not_md5);
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
  f->not_md5 = calloc (cfg->idx->nbuckets ? cfg->idx->nbuckets : 1,
                       sizeof *f->not_md5);
  if (f->not_md5 == NULL)
    {
      free (f);
      return s3bd_fail (err, S3BD_ENOMEM, "fetch-s3: out of memory");
    }
  if (s3_engine_new (cfg->client, cfg->max_requests, &f->engine, err) == -1)
    {
      free (f->not_md5);
      free (f);
      return -1;
    }
  *out = &f->base;
  return 0;
}

int
fetch_s3_check (struct s3_client *client, const struct s3bd_index *idx,
                struct s3bd_error *err)
{
  unsigned char byte;

  for (uint64_t i = 0; i < idx->nobjects; i++)
    {
      const struct index_object *o = &idx->objects[i];

      if (o->size == 0)
        continue;
      return s3_get (client, idx->buckets[o->bucket], o->key, 0, 1, o->etag,
                     &byte, 0, err);
    }
  return 0;
}
