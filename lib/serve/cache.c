/* s3bd: the chunk cache.  See cache.h.
 *
 * How the cache works
 *
 * One mutex (c->lock) guards a hash table of chunks keyed by (object,
 * chunk index), the LRU list and the counters.  A chunk is in the table
 * from the moment its fetch starts (FETCHING) until it is evicted
 * (READY) or its fetch fails; a chunk missing from the table is the
 * "empty" state.  Chunks fetched together belong to one fill: the run of
 * consecutive chunks that one call of the fetcher writes, with one
 * condition variable its readers wait on, so a finished fetch wakes only
 * its own readers.
 *
 * A reader pins every chunk it copies from or waits for.  A pinned chunk
 * is never evicted and never freed, so the reader may drop the lock and
 * copy from its buffer: the lock is never held across the fetcher or a
 * memcpy.  Buffers of a new fill are allocated, and evicted buffers are
 * freed, outside the lock too; only the bookkeeping happens under it.
 *
 * Memory: c->stats.bytes counts every buffer, ready or being fetched, and
 * room is made by evicting the least recently used READY chunks that are
 * not pinned.  A demand read never fails for lack of room: when pinned
 * and in-flight chunks fill the cache it allocates anyway, so the cache
 * may exceed max_bytes by at most the chunks the reads in progress are
 * fetching (each fill of a read lies inside the read's range); the read
 * trims the excess again when it is done.  cache_prefetch never goes past
 * max_bytes and never evicts a chunk fetched ahead and not yet read: it
 * fetches less instead.
 *
 * A fill's chunks become READY together when it is done, or from the
 * front as the fetcher reports them final (fill_progress: a GET of
 * 32 MiB arrives over 100 ms, and the reader that needs its first chunk
 * should not wait for the last).  A chunk made READY that way leaves the
 * fill: it may be evicted while the fill is still in flight, and the
 * fill never touches it again (the fetcher promised not to write it).
 *
 * Lifetimes: a fill is referenced by its fetcher (until fill_done)
 * and by each reader waiting on it; the last reference frees it.  A chunk
 * whose fill failed leaves the table at once but lives, FAILED and
 * without a buffer, until its last pin is dropped.
 *
 * Lock order: c->lock, then c->pool_lock (the spare buffers, see "Chunk
 * buffers"); no callback runs under either.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/hashmap.h"
#include "s3bd/cache.h"

/* A fill carries at most this many chunks, whatever max_fetch says, so
 * that iovcnt stays an int well below IOV_MAX.
 */
#define FILL_MAX_CHUNKS 1024

/* cache_new reserves table room for at most this many chunks (64 MiB of
 * table); a bigger cache grows its table as it fills.
 */
#define TABLE_RESERVE_MAX (1u << 21)

enum chunk_state
{
  CHUNK_FETCHING, /* in the table; the fetcher writes buf */
  CHUNK_READY,    /* in the table and on the LRU list; buf is immutable */
  CHUNK_FAILED,   /* out of the table, no buf: freed at its last unpin */
};

struct chunk
{
  uint64_t object, index;
  struct chunk *freed_next;  /* the free list once evicted */
  struct chunk *prev, *next; /* LRU list, READY chunks only */
  struct cache_fill *fill;   /* while FETCHING */
  /* The pointer is set by the thread that starts the fill, outside the
   * lock but before the fetcher, and is read by others only once the chunk
   * is READY, which fill_done publishes under the lock.
   */
  unsigned char *buf;
  size_t len;    /* chunk_size, less for an object's last */
  unsigned pins; /* readers copying or waiting: keep it */
  /* Readers waiting for this chunk of a fill in flight: progress wakes
   * the fill's waiters only when a chunk someone waits for is in.
   */
  unsigned waiters;
  enum chunk_state state;
  bool unread; /* fetched by cache_prefetch, not read yet */
};

struct cache_fill
{
  struct fetch_req req; /* first: the fetcher's pointer is ours */
  struct cache *cache;
  uint64_t object, off, len;
  unsigned refs; /* the fetcher's, plus one per waiter */
  bool done, failed;
  /* Chunks [0, ready) were reported final by fill_progress: they
   * are READY (or evicted since: the fill no longer owns them, and its
   * pointers to them must not be followed).
   */
  int ready;
  /* Broadcast when chunks become READY and once more when done is set. */
  pthread_cond_t done_cond;
  struct s3bd_error error; /* when failed */
  int n;
  struct chunk **chunks; /* n of them, in order */
  struct iovec *iov;     /* written by the thread starting it */
};

struct cache
{
  /* Read-only after cache_new. */
  struct fetcher *fetcher;
  uint64_t max_bytes, chunk_size;
  unsigned shift;  /* log2 (chunk_size) */
  int fill_chunks; /* most chunks in one fill */

  pthread_mutex_t lock;
  /* protects: table, lru, unread_bytes, fills, stats, the fields of
   * every chunk and fill (except as noted beside buf and iov).
   */
  struct hashmap table;     /* (object, index) -> struct chunk * */
  struct chunk lru;         /* sentinel: lru.next is the oldest */
  uint64_t unread_bytes;    /* READY chunks still marked unread */
  uint64_t fills;           /* in flight */
  struct cache_stats stats; /* .bytes, .inflight_bytes kept current */

  /* Taken alone or inside c->lock, never around it. */
  pthread_mutex_t pool_lock;
  /* protects: pool, pool_n */
  unsigned char **pool; /* spare buffers of chunk_size bytes */
  size_t pool_n, pool_max;
};

/* ---- Chunk buffers ----
 *
 * Straight from the kernel, faulted in by the mmap call itself
 * (MAP_POPULATE).  A malloc'd buffer was faulted in page by page as the
 * body was first written into it: for a cold cache, 262,144 page faults
 * per GiB fetched, a quarter of the plugin's CPU time, where one mmap
 * call per chunk allocates and clears its pages in one go.  The clearing
 * is then most of the rest (a third of the plugin's CPU on a cold scan),
 * so evicted buffers of a whole chunk go to a small pool, and fills take
 * them from there before asking the kernel: once the cache is full, a
 * scan recycles its buffers without clearing them.  The pool holds at
 * most POOL_BYTES (a fixed overhead on top of max_bytes); buffers it
 * has no room for, and shorter ones (an object's last chunk), go back
 * to the kernel.
 */

#define POOL_BYTES (32u << 20)

static unsigned char *
buf_alloc (struct cache *c, size_t len)
{
  void *p = NULL;

  if (len == c->chunk_size)
    {
      pthread_mutex_lock (&c->pool_lock);
      if (c->pool_n > 0)
        p = c->pool[--c->pool_n];
      pthread_mutex_unlock (&c->pool_lock);
      if (p)
        return p;
    }
  p = mmap (NULL, len, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void
buf_free (struct cache *c, unsigned char *buf, size_t len)
{
  if (buf == NULL)
    return;
  if (len == c->chunk_size)
    {
      pthread_mutex_lock (&c->pool_lock);
      if (c->pool_n < c->pool_max)
        {
          c->pool[c->pool_n++] = buf;
          buf = NULL;
        }
      pthread_mutex_unlock (&c->pool_lock);
    }
  if (buf)
    munmap (buf, len);
}

/* ---- Hash table and LRU list ---- */

static uint64_t
chunk_hash (uint64_t object, uint64_t index)
{
  /* splitmix64's finaliser: consecutive chunks spread over the table. */
  uint64_t z = object * 0x9E3779B97F4A7C15u + index;

  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

struct chunk_key
{
  uint64_t object, index;
};

static bool
chunk_eq (const void *ctx, uint64_t value)
{
  const struct chunk_key *k = ctx;
  const struct chunk *ch = (const struct chunk *)(uintptr_t)value;

  return ch->object == k->object && ch->index == k->index;
}

static bool
chunk_is (const void *ctx, uint64_t value)
{
  return (const struct chunk *)(uintptr_t)value == ctx;
}

static struct chunk *
lookup (const struct cache *c, uint64_t object, uint64_t index)
{
  struct chunk_key key = { object, index };
  struct hashmap_slot *slot
      = hashmap_lookup (&c->table, chunk_hash (object, index), chunk_eq, &key);

  return slot ? (struct chunk *)(uintptr_t)slot->value : NULL;
}

/* The caller has reserved room (hashmap_reserve), so this cannot fail. */
static void
hash_insert (struct cache *c, struct chunk *ch)
{
  int r = hashmap_insert (&c->table, chunk_hash (ch->object, ch->index),
                          (uintptr_t)ch);

  assert (r == 0);
  (void)r;
}

static void
hash_remove (struct cache *c, struct chunk *ch)
{
  uint64_t r = hashmap_remove (&c->table, chunk_hash (ch->object, ch->index),
                               chunk_is, ch);

  assert (r != 0);
  (void)r;
}

static void
lru_unlink (struct chunk *ch)
{
  ch->prev->next = ch->next;
  ch->next->prev = ch->prev;
  ch->prev = ch->next = NULL;
}

/* Makes ch the most recently used. */
static void
lru_push (struct cache *c, struct chunk *ch)
{
  ch->prev = c->lru.prev;
  ch->next = &c->lru;
  c->lru.prev->next = ch;
  c->lru.prev = ch;
}

/* ---- Sizes ---- */

/* Bytes of chunk `index` of an object of `object_size` bytes; the caller
 * knows the chunk starts inside the object, so neither the shift nor the
 * subtraction can wrap.
 */
static size_t
chunk_len (const struct cache *c, uint64_t object_size, uint64_t index)
{
  uint64_t start = index << c->shift;

  assert (start < object_size);
  if (object_size - start < c->chunk_size)
    return (size_t)(object_size - start);
  return (size_t)c->chunk_size;
}

/* Whether `need` more bytes would take the cache past its bound. */
static bool
over_bound (const struct cache *c, uint64_t need)
{
  return need > c->max_bytes || c->stats.bytes > c->max_bytes - need;
}

/* ---- Eviction ---- */

static void
evict (struct cache *c, struct chunk *ch, struct chunk **freed)
{
  assert (ch->state == CHUNK_READY && ch->pins == 0);
  lru_unlink (ch);
  hash_remove (c, ch);
  c->stats.bytes -= ch->len;
  c->stats.evictions++;
  if (ch->unread)
    {
      c->stats.prefetch_wasted++;
      c->unread_bytes -= ch->len;
    }
  /* Freed by the caller once it has dropped the lock. */
  ch->freed_next = *freed;
  *freed = ch;
}

/* Evicts least recently used chunks until `need` more bytes fit in
 * max_bytes; false when every chunk left is pinned, in flight, or (with
 * spare_unread) fetched ahead and unread.  The scan from the old end
 * skips only such chunks, and there are few of them: pinned ones are
 * being copied, unread ones are bounded by the readahead budget.
 */
static bool
make_room (struct cache *c, uint64_t need, bool spare_unread,
           struct chunk **freed)
{
  struct chunk *ch;

  while (over_bound (c, need))
    {
      for (ch = c->lru.next; ch != &c->lru; ch = ch->next)
        if (ch->pins == 0 && !(spare_unread && ch->unread))
          break;
      if (ch == &c->lru)
        return false;
      evict (c, ch, freed);
    }
  return true;
}

static void
free_chunks (struct cache *c, struct chunk *list)
{
  struct chunk *next;

  for (; list; list = next)
    {
      next = list->freed_next;
      buf_free (c, list->buf, list->len);
      free (list);
    }
}

static void
unpin (struct chunk *ch)
{
  assert (ch->pins > 0);
  if (--ch->pins == 0 && ch->state == CHUNK_FAILED)
    free (ch);
}

/* ---- Fills ---- */

/* Length of the run of missing chunks starting at `first` (missing
 * itself), up to `last` and at most one fill.
 */
static int
missing_run (const struct cache *c, uint64_t object, uint64_t first,
             uint64_t last)
{
  int n = 1;

  while (n < c->fill_chunks && last - first >= (uint64_t)n
         && lookup (c, object, first + n) == NULL)
    n++;
  return n;
}

static fetch_done_fn fill_done;
static fetch_progress_fn fill_progress;

static void
fill_put (struct cache_fill *fill)
{
  assert (fill->refs > 0);
  if (--fill->refs > 0)
    return;
  pthread_cond_destroy (&fill->done_cond);
  free (fill->chunks);
  free (fill->iov);
  free (fill);
}

/* Puts chunks first .. first + n - 1 of the object in the table, being
 * fetched by a new fill.  A demand fill keeps a reference and a pin on
 * every chunk for the reader that creates it, so that nothing it fetches
 * for the reader can be evicted before the reader has copied it.  NULL
 * when out of memory, with nothing changed.
 */
static struct cache_fill *
fill_new (struct cache *c, uint64_t object, uint64_t object_size,
          uint64_t first, int n, bool prefetch)
{
  struct cache_fill *fill;
  int k;

  fill = calloc (1, sizeof *fill);
  if (fill == NULL)
    return NULL;
  fill->chunks = calloc ((size_t)n, sizeof *fill->chunks);
  fill->iov = calloc ((size_t)n, sizeof *fill->iov);
  if (fill->chunks == NULL || fill->iov == NULL
      || pthread_cond_init (&fill->done_cond, NULL) != 0)
    {
      free (fill->chunks);
      free (fill->iov);
      free (fill);
      return NULL;
    }
  for (k = 0; k < n; k++)
    {
      fill->chunks[k] = calloc (1, sizeof **fill->chunks);
      if (fill->chunks[k] == NULL)
        {
          while (k-- > 0)
            free (fill->chunks[k]);
          fill->refs = 1;
          fill_put (fill);
          return NULL;
        }
    }

  /* Room in the table now: nothing below fails. */
  if (hashmap_reserve (&c->table, c->table.n + (size_t)n) == -1)
    {
      for (k = 0; k < n; k++)
        free (fill->chunks[k]);
      fill->refs = 1;
      fill_put (fill);
      return NULL;
    }
  fill->cache = c;
  fill->object = object;
  fill->off = first << c->shift;
  fill->n = n;
  fill->refs = prefetch ? 1 : 2;
  for (k = 0; k < n; k++)
    {
      struct chunk *ch = fill->chunks[k];

      ch->object = object;
      ch->index = first + (uint64_t)k;
      ch->len = chunk_len (c, object_size, ch->index);
      ch->state = CHUNK_FETCHING;
      ch->fill = fill;
      ch->pins = prefetch ? 0 : 1;
      ch->unread = prefetch;
      hash_insert (c, ch);
      fill->len += ch->len;
    }
  c->stats.bytes += fill->len;
  c->stats.inflight_bytes += fill->len;
  c->stats.fetches++;
  c->stats.fetched_bytes += fill->len;
  if (prefetch)
    c->stats.prefetched_chunks += (uint64_t)n;
  c->fills++;
  return fill;
}

/* Allocates the buffers of a new fill and hands it to the fetcher.
 * Called without the lock: nobody else touches the buffers or the iov of
 * a fill before fill_done.  The fill may be gone when this returns.
 */
static void
fill_start (struct cache *c, struct cache_fill *fill)
{
  struct s3bd_error err;
  int k;

  for (k = 0; k < fill->n; k++)
    {
      struct chunk *ch = fill->chunks[k];

      ch->buf = buf_alloc (c, ch->len);
      if (ch->buf == NULL)
        {
          s3bd_error_clear (&err);
          s3bd_fail (&err, S3BD_ENOMEM,
                     "cache: no memory for object %" PRIu64 " bytes %" PRIu64
                     "-%" PRIu64,
                     fill->object, fill->off, fill->off + fill->len - 1);
          fill_done (&fill->req, &err);
          return;
        }
      fill->iov[k].iov_base = ch->buf;
      fill->iov[k].iov_len = ch->len;
    }
  fill->req = (struct fetch_req){ .object = fill->object,
                                  .off = fill->off,
                                  .len = fill->len,
                                  .iov = fill->iov,
                                  .iovcnt = fill->n,
                                  .done = fill_done,
                                  .progress = fill_progress };
  c->fetcher->ops->fetch (c->fetcher, &fill->req);
}

static void
fill_wait (struct cache *c, struct cache_fill *fill)
{
  while (!fill->done)
    pthread_cond_wait (&fill->done_cond, &c->lock);
}

/* Chunk ch of a fill in flight has all its bytes: readers may have it. */
static void
chunk_ready (struct cache *c, struct chunk *ch)
{
  c->stats.inflight_bytes -= ch->len;
  ch->fill = NULL;
  ch->state = CHUNK_READY;
  lru_push (c, ch);
  if (ch->unread)
    c->unread_bytes += ch->len;
}

/* The fetcher's report: the first n buffers of the fill are final.
 * Their chunks become READY at once, so that a reader waiting for the
 * head of a large fetch need not wait for its tail; they stay cached even
 * if the rest of the fill fails.
 */
static void
fill_progress (struct fetch_req *r, int n)
{
  struct cache_fill *fill = (struct cache_fill *)r;
  struct cache *c = fill->cache;

  pthread_mutex_lock (&c->lock);
  assert (!fill->done && n <= fill->n);
  if (n > fill->ready)
    {
      bool wanted = false;

      for (int k = fill->ready; k < n; k++)
        {
          assert (fill->chunks[k]->state == CHUNK_FETCHING);
          wanted |= fill->chunks[k]->waiters > 0;
          chunk_ready (c, fill->chunks[k]);
        }
      fill->ready = n;
      /* A GET reports each of its chunks as it lands; waking the fill's
       * waiters only when one of theirs is in spares them a wake-up for
       * every chunk nobody is waiting for.
       */
      if (wanted)
        pthread_cond_broadcast (&fill->done_cond);
    }
  pthread_mutex_unlock (&c->lock);
}

/* The fetcher's report that the fill is over: error NULL on success. */
static void
fill_done (struct fetch_req *r, const struct s3bd_error *error)
{
  struct cache_fill *fill = (struct cache_fill *)r;
  struct cache *c = fill->cache;
  int k;

  pthread_mutex_lock (&c->lock);
  assert (!fill->done);
  fill->done = true;
  if (error)
    {
      fill->failed = true;
      fill->error = *error;
      /* A reader returning -1 must not see "OK". */
      if (fill->error.code == S3BD_OK)
        fill->error.code = S3BD_EIO;
      c->stats.errors++;
    }
  /* Chunks reported final stay, even when the rest failed. */
  for (k = fill->ready; k < fill->n; k++)
    {
      struct chunk *ch = fill->chunks[k];

      assert (ch->state == CHUNK_FETCHING && ch->fill == fill);
      if (!fill->failed)
        {
          chunk_ready (c, ch);
          continue;
        }
      /* Nothing else of a failed fetch stays: the next read tries again. */
      c->stats.inflight_bytes -= ch->len;
      ch->fill = NULL;
      hash_remove (c, ch);
      c->stats.bytes -= ch->len;
      ch->state = CHUNK_FAILED;
      buf_free (c, ch->buf, ch->len);
      ch->buf = NULL;
      if (ch->pins == 0)
        {
          free (ch);
          fill->chunks[k] = NULL;
        }
    }
  c->fills--;
  pthread_cond_broadcast (&fill->done_cond);
  fill_put (fill);
  pthread_mutex_unlock (&c->lock);
}

/* ---- Reading ---- */

/* Copies the part of [off, off + len) that pinned chunk ch holds.
 * Without the lock: it reads only what a pin keeps still (index, len,
 * buf and its bytes), never pins or state.
 */
static void
copy_from (const struct cache *c, const struct chunk *ch, uint64_t off,
           uint64_t len, unsigned char *out)
{
  uint64_t start = ch->index << c->shift;
  uint64_t lo = off > start ? off : start;
  uint64_t hi = off + len < start + ch->len ? off + len : start + ch->len;

  assert (lo < hi);
  memcpy (out + (lo - off), ch->buf + (lo - start), (size_t)(hi - lo));
}

/* A reader copying from a READY chunk fetched ahead: it was worth it. */
static void
mark_read (struct cache *c, struct chunk *ch)
{
  if (!ch->unread)
    return;
  ch->unread = false;
  c->stats.prefetch_used++;
  c->unread_bytes -= ch->len;
}

/* Fetches the run of missing chunks starting at chunk `idx` and copies
 * them out.  Returns the number of chunks copied, or -1 with err set.
 * Called and returns with the lock held.
 */
static int
read_missing (struct cache *c, uint64_t object, uint64_t object_size,
              uint64_t idx, uint64_t last, uint64_t off, uint64_t len,
              unsigned char *out, struct chunk **freed, struct s3bd_error *err)
{
  struct cache_fill *fill;
  uint64_t need = 0;
  int k, n;

  n = missing_run (c, object, idx, last);
  for (k = 0; k < n; k++)
    need += chunk_len (c, object_size, idx + (uint64_t)k);
  /* Allocates even when nothing can be evicted: see the top of the file. */
  make_room (c, need, false, freed);
  fill = fill_new (c, object, object_size, idx, n, false);
  if (fill == NULL)
    return s3bd_fail (err, S3BD_ENOMEM,
                      "cache: no memory to read object %" PRIu64, object);

  pthread_mutex_unlock (&c->lock);
  free_chunks (c, *freed);
  *freed = NULL;
  fill_start (c, fill);
  pthread_mutex_lock (&c->lock);
  fill_wait (c, fill);

  if (fill->failed)
    {
      if (err)
        *err = fill->error;
      for (k = 0; k < n; k++)
        unpin (fill->chunks[k]);
      fill_put (fill);
      return -1;
    }
  /* Every chunk is READY and pinned by us: copy them in one go. */
  for (k = 0; k < n; k++)
    assert (fill->chunks[k]->state == CHUNK_READY);
  pthread_mutex_unlock (&c->lock);
  for (k = 0; k < n; k++)
    copy_from (c, fill->chunks[k], off, len, out);
  pthread_mutex_lock (&c->lock);
  for (k = 0; k < n; k++)
    unpin (fill->chunks[k]);
  fill_put (fill);
  return n;
}

int
cache_read (struct cache *c, uint64_t object, uint64_t object_size,
            uint64_t off, uint64_t len, void *buf, struct s3bd_error *err)
{
  struct chunk *freed = NULL;
  bool started = false, waited = false;
  uint64_t idx, last;
  int r = 0;

  if (off > object_size || len > object_size - off)
    return s3bd_fail (err, S3BD_EINVAL,
                      "cache: read of object %" PRIu64 " bytes %" PRIu64
                      "+%" PRIu64 " past its end (%" PRIu64 " bytes)",
                      object, off, len, object_size);
#if SIZE_MAX < UINT64_MAX
  if (len > SIZE_MAX)
    return s3bd_fail (err, S3BD_EINVAL,
                      "cache: read of %" PRIu64 " bytes is too large", len);
#endif
  if (len == 0)
    return 0;
  idx = off >> c->shift;
  last = (off + len - 1) >> c->shift;

  pthread_mutex_lock (&c->lock);
  while (idx <= last)
    {
      struct chunk *ch = lookup (c, object, idx);

      if (ch == NULL)
        {
          int n = read_missing (c, object, object_size, idx, last, off, len,
                                buf, &freed, err);
          started = true;
          if (n < 0)
            {
              r = -1;
              break;
            }
          idx += (uint64_t)n;
          continue;
        }

      ch->pins++;
      if (ch->state == CHUNK_FETCHING)
        {
          struct cache_fill *fill = ch->fill;

          waited = true;
          fill->refs++;
          /* Until this chunk is READY: the fetcher may report it before
           * the rest of its fill (fill_progress).
           */
          ch->waiters++;
          while (ch->state == CHUNK_FETCHING)
            pthread_cond_wait (&fill->done_cond, &c->lock);
          ch->waiters--;
          if (ch->state == CHUNK_FAILED)
            {
              if (err)
                *err = fill->error;
              fill_put (fill);
              unpin (ch);
              r = -1;
              break;
            }
          fill_put (fill);
        }
      else
        {
          lru_unlink (ch);
          lru_push (c, ch);
        }
      assert (ch->state == CHUNK_READY);
      mark_read (c, ch);
      pthread_mutex_unlock (&c->lock);
      copy_from (c, ch, off, len, buf);
      pthread_mutex_lock (&c->lock);
      unpin (ch);
      idx++;
    }

  if (started)
    c->stats.misses++;
  else if (waited)
    c->stats.waits++;
  else
    c->stats.hits++;
  /* Give back what a read had to take past the bound. */
  make_room (c, 0, false, &freed);
  pthread_mutex_unlock (&c->lock);
  free_chunks (c, freed);
  return r;
}

/* ---- Prefetching ---- */

uint64_t
cache_prefetch (struct cache *c, uint64_t object, uint64_t object_size,
                uint64_t off, uint64_t len)
{
  struct chunk *freed = NULL;
  uint64_t idx, last, started = 0;

  if (len == 0 || off >= object_size)
    return 0;
  if (len > object_size - off)
    len = object_size - off;
  idx = off >> c->shift;
  last = (off + len - 1) >> c->shift;

  pthread_mutex_lock (&c->lock);
  while (idx <= last)
    {
      struct cache_fill *fill;
      uint64_t need = 0;
      int k, n;

      if (lookup (c, object, idx) != NULL)
        {
          idx++;
          continue;
        }
      n = missing_run (c, object, idx, last);
      for (k = 0; k < n; k++)
        need += chunk_len (c, object_size, idx + (uint64_t)k);
      if (!make_room (c, need, true, &freed))
        {
          /* Fetch what fits and stop: fetching ahead must not push out
           * what was fetched ahead before and is about to be read.
           */
          uint64_t room = 0;

          if (c->stats.bytes < c->max_bytes)
            room = c->max_bytes - c->stats.bytes;
          need = 0;
          for (k = 0; k < n; k++)
            {
              size_t l = chunk_len (c, object_size, idx + (uint64_t)k);
              if (need + l > room)
                break;
              need += l;
            }
          n = k;
          if (n == 0)
            break;
        }
      fill = fill_new (c, object, object_size, idx, n, true);
      if (fill == NULL)
        break;
      started += need;
      idx += (uint64_t)n;
      pthread_mutex_unlock (&c->lock);
      free_chunks (c, freed);
      freed = NULL;
      fill_start (c, fill);
      pthread_mutex_lock (&c->lock);
    }
  pthread_mutex_unlock (&c->lock);
  free_chunks (c, freed);
  return started;
}

/* ---- Set-up and counters ---- */

int
cache_new (const struct cache_config *cfg, struct fetcher *fetcher,
           struct cache **out, struct s3bd_error *err)
{
  struct cache *c;
  uint64_t chunks, fill_chunks;
  unsigned shift;

  if (fetcher == NULL || fetcher->ops->fetch == NULL)
    return s3bd_fail (err, S3BD_EINVAL, "cache: no fetch function");
  if (cfg->chunk_size < 4096 || cfg->chunk_size > 64 << 20
      || (cfg->chunk_size & (cfg->chunk_size - 1)) != 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "cache: chunk size %" PRIu64
                      " is not a power of two from 4 KiB to 64 MiB",
                      cfg->chunk_size);
  if (cfg->max_bytes < cfg->chunk_size)
    return s3bd_fail (err, S3BD_EINVAL,
                      "cache: size %" PRIu64 " is less than a chunk (%" PRIu64
                      ")",
                      cfg->max_bytes, cfg->chunk_size);
  if (cfg->max_fetch < cfg->chunk_size)
    return s3bd_fail (err, S3BD_EINVAL,
                      "cache: largest fetch %" PRIu64
                      " is less than a chunk (%" PRIu64 ")",
                      cfg->max_fetch, cfg->chunk_size);

  for (shift = 12; (UINT64_C (1) << shift) < cfg->chunk_size; shift++)
    ;
  fill_chunks = cfg->max_fetch >> shift;
  if (fill_chunks > FILL_MAX_CHUNKS)
    fill_chunks = FILL_MAX_CHUNKS;
  /* Room for every chunk that fits, within reason; the table grows
   * while reads take the cache past its bound.
   */
  chunks = cfg->max_bytes >> shift;
  if (chunks > TABLE_RESERVE_MAX)
    chunks = TABLE_RESERVE_MAX;

  c = calloc (1, sizeof *c);
  if (c == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "cache: out of memory");
  c->pool_max = POOL_BYTES / cfg->chunk_size;
  c->pool = calloc (c->pool_max ? c->pool_max : 1, sizeof *c->pool);
  if (hashmap_reserve (&c->table, (size_t)chunks) == -1 || c->pool == NULL)
    goto nomem;
  if (pthread_mutex_init (&c->lock, NULL) != 0)
    goto nomem;
  if (pthread_mutex_init (&c->pool_lock, NULL) != 0)
    {
      pthread_mutex_destroy (&c->lock);
      goto nomem;
    }
  c->fetcher = fetcher;
  c->max_bytes = cfg->max_bytes;
  c->chunk_size = cfg->chunk_size;
  c->shift = shift;
  c->fill_chunks = (int)fill_chunks;
  c->lru.prev = c->lru.next = &c->lru;
  *out = c;
  return 0;

nomem:
  hashmap_free (&c->table);
  free (c->pool);
  free (c);
  return s3bd_fail (err, S3BD_ENOMEM, "cache: out of memory");
}

void
cache_free (struct cache *c)
{
  size_t i;

  if (c == NULL)
    return;
  assert (c->fills == 0);
  for (i = 0; i < c->table.cap; i++)
    if (c->table.slots[i].value)
      {
        struct chunk *ch = (struct chunk *)(uintptr_t)c->table.slots[i].value;

        buf_free (c, ch->buf, ch->len);
        free (ch);
      }
  while (c->pool_n > 0)
    munmap (c->pool[--c->pool_n], c->chunk_size);
  free (c->pool);
  hashmap_free (&c->table);
  pthread_mutex_destroy (&c->pool_lock);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

uint64_t
cache_ahead_bytes (struct cache *c)
{
  uint64_t r;

  pthread_mutex_lock (&c->lock);
  r = c->unread_bytes + c->stats.inflight_bytes;
  pthread_mutex_unlock (&c->lock);
  return r;
}

void
cache_get_stats (struct cache *c, struct cache_stats *s)
{
  pthread_mutex_lock (&c->lock);
  *s = c->stats;
  pthread_mutex_unlock (&c->lock);
}
