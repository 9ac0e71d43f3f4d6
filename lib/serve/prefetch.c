/* s3bd: the readahead policy.  See prefetch.h.
 *
 * How it works.  A table of max_streams streams, each remembering the
 * end of its furthest read (end), the end of what was advised for it
 * (ahead: everything advised for the stream lies below it), its window
 * (0 until it is sequential) and where end was when the window was last
 * set (grown_at), how many reads it had and when it was last used.
 * Every read is matched against the whole table: a linear scan of a few
 * dozen entries is cheaper than any index, and keeps each call
 * O(max_streams).
 *
 *  - A read that continues no stream replaces the least recently used
 *    stream, or an unused slot, and is advised nothing.
 *  - A stream's second read must start exactly where its first ended.
 *    Only later reads may skip ahead up to gap, or come up to gap behind
 *    the end (reordered).  The tolerance cannot apply to the second read:
 *    a random reader leaves max_streams one-read streams behind it, and
 *    with the default 8 MiB gap about one random read in five (over
 *    1 GiB) would land near one of them and look sequential.  Exactly
 *    adjacent, it is one in 16,384 for 4 KiB reads over 1 GiB, and then
 *    the reader did read two neighbouring blocks.
 *  - A read more than gap past the end starts another stream even when
 *    it falls in what was advised.  Taken as the stream's, a random read
 *    there would move the end, trigger advice past it, and leave the
 *    sequential reader more than gap behind: it would start over at
 *    min_window.  A reader that really skips that far starts over too;
 *    its new stream may advise bytes the old one did, and the cache
 *    fetches none that it holds or has in flight.
 *  - The second read sets the window to min_window.  A later read that
 *    leaves end at least a window past grown_at doubles it, up to
 *    max_window, once per read; a read that moves end less, or not at
 *    all, leaves it.  Doubling on every read would reach 32 MiB by the
 *    end of a 1 MiB file read in 128 KiB pieces, and advise 34 times the
 *    bytes read for such files read in random order.  This way the
 *    window, which bounds the lead, grows only as fast as the reader
 *    consumes it (1 MiB at the end of that file), and a scan in small
 *    reads reaches max_window after about max_window bytes.
 *  - Advice is [max (ahead, end), min (end + window, device_size)), cut
 *    to budget, but only when the lead, ahead - end, is below three
 *    quarters of the window (a quarter of it consumed since the last
 *    refill), and only when it is at least min (min_advice, window,
 *    device_size - start) long.  Each range costs the caller at least a
 *    GET, and a GET has a fixed price that dwarfs 128 KiB: advising the
 *    slice each read uncovers would make small GETs, and a scan would
 *    run at the server's request rate instead of its bandwidth.  A
 *    refill that waited for half the window to drain would leave the
 *    reader waiting on the refill's first GET once the lead ran out.
 *    With a quarter, a 64 MiB window is refilled 16 MiB at a time (two
 *    GETs of the default max-fetch, fetched in parallel) and the reader
 *    always has three quarters of a window advised ahead of it.  The
 *    first advice (lead 0) and the one after a doubling (lead below the
 *    old window, half the new one) are due at once.  min_advice matters
 *    where a quarter window is less than it: a window under four times
 *    min_advice, whose refill waits for the lead to drain to window -
 *    min_advice (to nothing for a window of min_advice or less: it is
 *    the doubling read, a window later, that is advised), and a short
 *    budget, which a stream waits to grow rather than take the 128 KiB
 *    each read of the others frees.  At the device's end nothing is
 *    left to wait for.
 *  - ahead only grows, so nothing is advised twice for one stream, and
 *    what budget cut off is advised by a later refill.  Streams do not
 *    see each other's advice: two streams over the same bytes may both
 *    advise them (the cache fetches them once).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

#include "s3bd/prefetch.h"

#define KiB 1024ull
#define MiB (1024 * KiB)

#define DEFAULT_MIN_WINDOW (512 * KiB)
#define DEFAULT_MAX_WINDOW (64 * MiB)
#define DEFAULT_MAX_STREAMS 16
#define DEFAULT_GAP (8 * MiB)
#define DEFAULT_MIN_ADVICE (1 * MiB)

struct stream
{
  uint64_t end;      /* end of the furthest read */
  uint64_t ahead;    /* end of what was advised; starts at end */
  uint64_t window;   /* 0 until the stream's second read */
  uint64_t grown_at; /* end when the window was last set */
  uint64_t hits;     /* reads of the stream; 0: the slot is unused */
  uint64_t tick;     /* last use; 0 for unused slots, so they go first */
};

struct prefetch
{
  struct prefetch_config cfg;
  uint64_t tick; /* one per read */
  struct prefetch_stats stats;
  struct stream *streams; /* cfg.max_streams of them */
};

static uint64_t
add_sat (uint64_t a, uint64_t b)
{
  return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t
min_u64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

static uint64_t
max_u64 (uint64_t a, uint64_t b)
{
  return a > b ? a : b;
}

struct prefetch *
prefetch_new (const struct prefetch_config *cfg)
{
  struct prefetch *p = calloc (1, sizeof *p);

  if (p == NULL)
    return NULL;
  p->cfg = *cfg;
  if (p->cfg.min_window == 0)
    p->cfg.min_window = DEFAULT_MIN_WINDOW;
  if (p->cfg.max_window == 0)
    p->cfg.max_window = DEFAULT_MAX_WINDOW;
  if (p->cfg.max_window < p->cfg.min_window)
    p->cfg.max_window = p->cfg.min_window;
  if (p->cfg.max_streams == 0)
    p->cfg.max_streams = DEFAULT_MAX_STREAMS;
  if (p->cfg.gap == 0)
    p->cfg.gap = DEFAULT_GAP;
  if (p->cfg.min_advice == 0)
    p->cfg.min_advice = DEFAULT_MIN_ADVICE;
  p->streams = calloc (p->cfg.max_streams, sizeof *p->streams);
  if (p->streams == NULL)
    {
      free (p);
      return NULL;
    }
  return p;
}

void
prefetch_free (struct prefetch *p)
{
  if (p == NULL)
    return;
  free (p->streams);
  free (p);
}

/* Whether a read at off continues s; if so, *dist is how far off is from
 * s's end, to pick the closest of several streams.
 */
static bool
continues (const struct prefetch *p, const struct stream *s, uint64_t off,
           uint64_t *dist)
{
  uint64_t lo, hi;

  if (s->hits == 0)
    return false;
  if (s->hits == 1)
    {
      /* Exactly adjacent: see "A stream's second read" above. */
      *dist = 0;
      return off == s->end;
    }
  /* Not s->ahead: see "more than gap past the end" above. */
  lo = s->end > p->cfg.gap ? s->end - p->cfg.gap : 0;
  hi = add_sat (s->end, p->cfg.gap);
  if (off < lo || off > hi)
    return false;
  *dist = off >= s->end ? off - s->end : s->end - off;
  return true;
}

size_t
prefetch_advise (struct prefetch *p, uint64_t off, uint64_t len,
                 uint64_t budget, struct prefetch_range *out, size_t max_out)
{
  struct stream *s = NULL, *lru = NULL;
  uint64_t best = 0, end = add_sat (off, len), start, target, n, least;
  unsigned i;

  p->stats.reads++;
  /* NBD sends no empty reads; one would say nothing about the reader. */
  if (len == 0)
    return 0;
  p->tick++;

  for (i = 0; i < p->cfg.max_streams; i++)
    {
      struct stream *t = &p->streams[i];
      uint64_t d;

      if (continues (p, t, off, &d)
          && (s == NULL || d < best || (d == best && t->tick > s->tick)))
        {
          s = t;
          best = d;
        }
      if (lru == NULL || t->tick < lru->tick)
        lru = t;
    }

  if (s == NULL)
    {
      *lru = (struct stream){
        .end = end,
        .ahead = end,
        .hits = 1,
        .tick = p->tick,
      };
      p->stats.streams_started++;
      return 0;
    }

  p->stats.sequential_reads++;
  s->hits++;
  s->tick = p->tick;
  if (end > s->end)
    {
      s->end = end;
      if (s->window == 0)
        {
          s->window = p->cfg.min_window;
          s->grown_at = end;
        }
      else if (s->window < p->cfg.max_window && end - s->grown_at >= s->window)
        {
          s->window
              = min_u64 (add_sat (s->window, s->window), p->cfg.max_window);
          s->grown_at = end;
        }
    }
  /* Only a stream's second read sets the window, and it moves the end. */
  assert (s->window != 0);

  start = max_u64 (s->ahead, s->end);
  target = min_u64 (add_sat (s->end, s->window), p->cfg.device_size);
  if (start >= target || budget == 0 || max_out == 0)
    return 0;
  /* Three quarters of a window in hand: wait for a bigger refill. */
  if (start - s->end >= s->window - s->window / 4)
    return 0;
  n = min_u64 (target - start, budget);
  least = min_u64 (min_u64 (p->cfg.min_advice, s->window),
                   p->cfg.device_size - start);
  if (n < least)
    return 0;
  /* One contiguous range: the caller fetches it in chunk-sized GETs. */
  out[0] = (struct prefetch_range){ .off = start, .len = n };
  s->ahead = start + n;
  p->stats.bytes_advised += n;
  return 1;
}

void
prefetch_get_stats (const struct prefetch *p, struct prefetch_stats *s)
{
  *s = p->stats;
}
