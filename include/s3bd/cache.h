/* s3bd: the chunk cache.
 *
 * Object bytes are cached in chunks: chunk i of object o holds bytes
 * [i * chunk_size, min (size, (i + 1) * chunk_size)) of it.  The cache is
 * shared by every connection, bounded in memory (max_bytes counts every
 * chunk buffer, filled or being filled), and evicts least recently used
 * filled chunks.  Concurrent readers of a chunk being fetched wait for the
 * same fetch (one GET).  No lock is held while bytes are fetched or
 * copied: a reader pins the chunk, copies, unpins.
 *
 * Fetching is a backend's (fetch.h): the cache asks for a run of
 * consecutive missing chunks of one object with one call of its fetch
 * (so a sequential reader gets one ranged GET for many chunks), and the
 * backend reports back through the request (struct fetch_req), from any
 * thread: the chunks it reports final (progress) become readable at once.
 *
 * A failed fetch fails the readers waiting for it, with the fetcher's
 * message, and leaves nothing cached but the chunks the fetcher reported
 * final before it failed: the next read tries again.
 */
#ifndef S3BD_CACHE_H
#define S3BD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "s3bd/error.h"
#include "s3bd/fetch.h"

struct cache;

struct cache_config
{
  uint64_t max_bytes;  /* memory bound of chunk buffers */
  uint64_t chunk_size; /* a power of two, 4 KiB .. 64 MiB */
  /* Largest run of chunks fetched with one call of the fetcher, in bytes
   * (at least one chunk; rounded down to whole chunks, at most 1024).
   */
  uint64_t max_fetch;
};

/* Each cache_read counts once: as a miss if it started a fetch, else as
 * a wait if it waited for someone else's, else as a hit.
 */
struct cache_stats
{
  uint64_t hits;                   /* reads served from filled chunks */
  uint64_t misses;                 /* reads that started a fetch */
  uint64_t waits;                  /* reads that waited for a fetch in flight */
  uint64_t fetches, fetched_bytes; /* the fetcher calls, bytes asked for */
  uint64_t prefetched_chunks;      /* chunks fetched by cache_prefetch */
  uint64_t prefetch_used;          /* of those, read at least once */
  uint64_t prefetch_wasted;        /* of those, evicted unread */
  uint64_t evictions;
  uint64_t errors;         /* failed fetches */
  uint64_t bytes;          /* chunk buffers now */
  uint64_t inflight_bytes; /* of those, being fetched */
};

/* The fetcher must outlive the cache. */
int cache_new (const struct cache_config *cfg, struct fetcher *fetcher,
               struct cache **out, struct s3bd_error *err);
/* Only when no fetch is in flight and no call is running. */
void cache_free (struct cache *c);

/* Reads bytes [off, off + len) of object `object` (object_size bytes
 * long; off + len <= object_size) into buf, fetching what is missing and
 * waiting for it.  Returns 0, or -1 with err set when a fetch failed.
 * Thread-safe.
 *
 * A read never fails for want of room: when every chunk is pinned or in
 * flight it allocates anyway, so the cache may pass max_bytes by at most
 * what the reads in progress are fetching, and gives it back when done.
 */
int cache_read (struct cache *c, uint64_t object, uint64_t object_size,
                uint64_t off, uint64_t len, void *buf, struct s3bd_error *err);

/* Starts fetching the chunks covering [off, off + len) of the object that
 * are neither cached nor in flight, without waiting, as long as the memory
 * bound allows (never evicting chunks fetched ahead and not read yet in
 * favour of more of the same).  Returns the bytes it started fetching.
 */
uint64_t cache_prefetch (struct cache *c, uint64_t object, uint64_t object_size,
                         uint64_t off, uint64_t len);

/* Bytes of chunks fetched ahead and not read yet, plus fetches in flight:
 * what counts against the readahead budget.
 */
uint64_t cache_ahead_bytes (struct cache *c);

void cache_get_stats (struct cache *c, struct cache_stats *s);

#endif
