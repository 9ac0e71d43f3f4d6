/* s3bd: where the chunk cache gets object bytes from.
 *
 * One ops table, a file per backend, in the way libnbd's nbdcopy has one
 * rw_ops: lib/serve/fetch-s3.c sends ranged GETs with If-Match; the unit
 * tests have fetchers of their own; hydration adds a local file.  The
 * cache calls nothing but this table.
 *
 * A backend embeds struct fetcher as its first member and finds itself
 * again from the pointer the cache passes back.
 */
#ifndef S3BD_FETCH_H
#define S3BD_FETCH_H

#include <stdint.h>
#include <sys/uio.h>

#include "s3bd/error.h"
#include "s3bd/log.h"

struct cache;
struct cache_fill;
struct fetcher;

/* Counters of a backend, summed over its life. */
struct fetch_stats
{
  uint64_t requests; /* attempts sent (GETs, reads) */
  uint64_t retries;
  uint64_t failures; /* fetches that ended in error */
  uint64_t bytes_in;
};

struct fetch_ops
{
  const char *name; /* "s3", "test", ... for messages */

  /* Fetch bytes [off, off + len) of object `object` into the buffers iov
   * (iovcnt of them, in order, adding up to len), then call
   * cache_fill_done (c, fill, ...), from any thread, possibly before
   * returning.  Called without any cache lock held.  iov and the buffers
   * belong to the cache again once cache_fill_done is called.  A backend
   * may report the buffers it has finished earlier, in order, with
   * cache_fill_progress.  A failure is reported to the cache with its
   * message; the backend logs it once, where it knows the subject.
   */
  void (*fetch) (struct fetcher *f, struct cache *c, struct cache_fill *fill,
                 uint64_t object, uint64_t off, uint64_t len,
                 const struct iovec *iov, int iovcnt);

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
  s3bd_log_fn *log;      /* NULL: say nothing */
  int verbose;           /* a debug line per GET */
};

/* The fetcher is usable once started (fetcher_start runs its engine's
 * thread); before that, fetch fails.
 */
int fetch_s3_new (const struct fetch_s3_config *cfg, struct fetcher **out,
                  struct s3bd_error *err);

#endif
