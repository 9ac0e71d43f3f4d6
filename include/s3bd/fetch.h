/* s3bd: where the chunk cache gets object bytes from.
 *
 * One ops table, a file per backend, in the way libnbd's nbdcopy has one
 * rw_ops: lib/serve/fetch-s3.c sends ranged GETs with If-Match; the unit
 * tests have fetchers of their own; hydration (hydrate.h) wraps another
 * backend and writes what it fetches to a local file.  The cache and the
 * hydration fill call nothing but this table.
 *
 * A backend embeds struct fetcher as its first member and finds itself
 * again from the pointer it is called with.
 */
#ifndef S3BD_FETCH_H
#define S3BD_FETCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "s3bd/error.h"
#include "s3bd/log.h"

struct fetcher;

/* Counters of a backend, summed over its life. */
struct fetch_stats
{
  uint64_t requests; /* attempts sent (GETs, reads) */
  uint64_t retries;
  uint64_t failures; /* fetches that ended in error */
  uint64_t bytes_in;
  uint64_t verified;   /* whole objects checked against their ETag's MD5 */
  uint64_t mismatches; /* of those, GETs whose bytes did not match */
};

/* One fetch: bytes [off, off + len) of object `object` into the buffers
 * iov (iovcnt of them, in order, adding up to len).  The asker owns the
 * request, iov and the buffers, and keeps them alive until done is
 * called; the backend writes nothing after it.
 */
struct fetch_req;
typedef void fetch_done_fn (struct fetch_req *r, const struct s3bd_error *err);
typedef void fetch_progress_fn (struct fetch_req *r, int n);

struct fetch_req
{
  uint64_t object, off, len;
  const struct iovec *iov;
  int iovcnt;
  /* Called once, from any thread, possibly before fetch returns: err
   * NULL on success, else the failure's message.
   */
  fetch_done_fn *done;
  /* Optional, before done: the first n buffers hold their final bytes
   * and the backend will not write to them again.  n only grows.
   */
  fetch_progress_fn *progress;
  /* A whole object: check its bytes against its ETag's MD5 whatever its
   * size (see fetch_s3_config.verify_max).
   */
  bool verify;
};

static inline void
fetch_req_done (struct fetch_req *r, const struct s3bd_error *err)
{
  r->done (r, err);
}

static inline void
fetch_req_progress (struct fetch_req *r, int n)
{
  if (r->progress)
    r->progress (r, n);
}

struct fetch_ops
{
  const char *name; /* "s3", "test", ... for messages */

  /* Starts fetch r (see struct fetch_req).  Called without any lock of
   * the asker's held.  A failure is reported through r->done with its
   * message; the backend logs it once, where it knows the subject.
   */
  void (*fetch) (struct fetcher *f, struct fetch_req *r);

  /* Optional: start the backend's threads (nbdkit's .after_fork). */
  int (*start) (struct fetcher *f, struct s3bd_error *err);
  /* Optional: stop taking fetches and finish those in flight (each is
   * reported done or failed) before returning.  Fetches asked for after
   * stop fail at once.
   */
  void (*stop) (struct fetcher *f);
  /* Optional: its counters. */
  void (*get_stats) (struct fetcher *f, struct fetch_stats *s);
  /* Frees the backend; only after stop, or when it never started. */
  void (*free) (struct fetcher *f);
};

struct fetcher
{
  const struct fetch_ops *ops;
};

int fetcher_start (struct fetcher *f, struct s3bd_error *err);
void fetcher_stop (struct fetcher *f);
void fetcher_get_stats (struct fetcher *f, struct fetch_stats *s);
/* f may be NULL. */
void fetcher_free (struct fetcher *f);

/* ---- The S3 backend (fetch-s3.c) ---- */

struct s3_client;
struct s3bd_index;

struct fetch_s3_config
{
  struct s3_client *client;
  /* Object ids of fetch are indexes into idx->objects: bucket, key and
   * the ETag every GET must match.  Must outlive the fetcher.
   */
  const struct s3bd_index *idx;
  unsigned max_requests; /* GETs in flight */
  /* A GET of a whole object of at most this many bytes whose ETag is a
   * single-part MD5 is checked against it before its bytes are handed
   * out, and sent again (up to 5 GETs in all) when they do not match; 0: only
   * fetches asking for it (fetch_req.verify).
   */
  uint64_t verify_max;
  s3bd_log_fn *log; /* NULL: say nothing */
  int verbose;      /* a debug line per GET */
};

/* The fetcher is usable once started (fetcher_start runs its engine's
 * thread); before that, fetch fails.
 */
int fetch_s3_new (const struct fetch_s3_config *cfg, struct fetcher **out,
                  struct s3bd_error *err);

/* Before serving or preloading: one signed, ranged GET of the first byte
 * of the first non-empty object, with If-Match, so that a wrong secret,
 * endpoint or region, a missing bucket or an object changed since
 * indexing is reported at once, with the S3 error, rather than at the
 * first read.  0 for an index without data.
 */
int fetch_s3_check (struct s3_client *client, const struct s3bd_index *idx,
                    struct s3bd_error *err);

#endif
