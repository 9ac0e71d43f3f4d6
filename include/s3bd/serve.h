/* s3bd: the data path without nbdkit.
 *
 * A served device is an index, a chunk cache filled by one fetch backend,
 * and the readahead policy: serve_read shows each read to the policy,
 * starts the fetches it advises (within the global readahead budget),
 * and then reads through the map.  The plugin is its callbacks around
 * this; Pipe export will be a second consumer of the same cache.
 *
 * Locks: the policy's own lock (ra_lock) is held around prefetch_advise
 * only, which calls nothing; the cache and the fetcher have their own.
 */
#ifndef S3BD_SERVE_H
#define S3BD_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "s3bd/cache.h"
#include "s3bd/fetch.h"
#include "s3bd/hydrate.h"
#include "s3bd/index.h"
#include "s3bd/map.h"

struct serve_config
{
  uint64_t cache_size; /* memory for chunk buffers */
  uint64_t chunk_size;
  uint64_t max_fetch;        /* largest single fetch */
  uint64_t readahead_max;    /* largest window of a stream; 0: none */
  uint64_t readahead_budget; /* bytes fetched ahead, in flight or unread */
  s3bd_log_fn *log;          /* NULL: say nothing */
  int verbose;               /* a debug line per readahead decision */
  /* NULL, or the hydration that is the fetcher: reads of what it holds
   * come from its copy, bypassing the cache.
   */
  struct hydrate *hydrate;
};

struct serve;

/* idx and fetcher must outlive the serve. */
int serve_new (const struct s3bd_index *idx, struct fetcher *fetcher,
               const struct serve_config *cfg, struct serve **out,
               struct s3bd_error *err);
/* Only once no call is running and the fetcher has stopped. */
void serve_free (struct serve *s);

uint64_t serve_size (const struct serve *s);
struct cache *serve_cache (struct serve *s);

/* A read of the device: readahead first (fetches started now overlap
 * this read), then the bytes through the map.
 */
int serve_read (struct serve *s, void *buf, uint64_t count, uint64_t offset,
                struct s3bd_error *err);
/* NBD_CMD_CACHE: starts fetching the range without waiting. */
void serve_prefetch (struct serve *s, uint64_t offset, uint64_t count);

/* Object bytes [off, off + len) of object `object` (off + len <= its
 * size), for consumers that walk objects rather than the device (Pipe
 * export): through the hydration's copy when there is one, else the
 * cache.  -1 with err set when a fetch failed.
 */
int serve_object_read (struct serve *s, uint64_t object, uint64_t off,
                       uint64_t len, void *buf, struct s3bd_error *err);
/* Where those bytes are in a local file, when a hydration's copy holds
 * them all: 0 with *fd and *fd_off (see hydrate_locate); -1 when they
 * must be read with serve_object_read.
 */
int serve_object_locate (struct serve *s, uint64_t object, uint64_t off,
                         uint64_t len, int *fd, uint64_t *fd_off);
/* Starts fetching them without waiting (within the cache's bound). */
void serve_object_prefetch (struct serve *s, uint64_t object, uint64_t off,
                            uint64_t len);
/* Bytes fetched ahead and not read yet, plus fetches in flight: what the
 * readahead budget (serve_config.readahead_budget) counts.
 */
uint64_t serve_ahead_bytes (struct serve *s);

/* One line of counters: the fetcher's, the cache's, the readahead's,
 * the hydration's.
 */
void serve_stats_line (struct serve *s, char *buf, size_t n);
/* The same counters as numbers: the fetcher's and the cache's. */
void serve_get_stats (struct serve *s, struct fetch_stats *fs,
                      struct cache_stats *cs);

#endif
