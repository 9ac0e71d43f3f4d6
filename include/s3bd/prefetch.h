/* s3bd: the readahead policy.
 *
 * A pure policy: it sees the reads the device gets (byte ranges of the
 * device) and answers with ranges to fetch ahead; it does no I/O and
 * keeps no clock, so unit tests drive it directly.  The caller serialises
 * calls (one lock).
 *
 * It tracks several sequential streams at once, by device address (many
 * readers, or one reader walking many files: the files of a directory lie
 * one after the other on the device, so a reader going through them in
 * order is one sequential stream and the next files are fetched ahead).
 * A stream becomes sequential on its second read, which must start
 * exactly where the first ended; its window then starts at min_window
 * and doubles, up to max_window, each time the reader has gone a whole
 * window's worth past where the window was last set: a long scan ramps
 * up geometrically, and a short file read in small pieces is not fetched
 * far past its end.  A read that matches no stream starts a new one
 * (replacing the least recently used), and gets no readahead: random
 * readers cause no useless fetches.
 *
 * Advice comes in batches, because each range costs the caller at least
 * one request: while what was advised ahead of the reader (the lead) is
 * still three quarters of a window or more, a read is advised nothing;
 * once it is less, the read is advised the whole refill, from the end of
 * the last advice to a window past the reader.  A scan in 128 KiB reads
 * with a 64 MiB window is advised 16 MiB at a time, not 128 KiB per read.
 * And no range is shorter than min_advice (or than the window, when that
 * is smaller), except the last one before the device's end: a refill
 * that would be shorter waits until the lead has drained further.
 */
#ifndef S3BD_PREFETCH_H
#define S3BD_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

struct prefetch_config
{
  uint64_t min_window;  /* bytes; default 512 KiB */
  uint64_t max_window;  /* bytes; default 64 MiB; >= min_window */
  unsigned max_streams; /* default 16 */
  /* Once a stream is sequential, a read that starts up to this far
   * before or past its end continues the stream (the kernel's own
   * readahead skips and reorders: through a loop device on nbdfuse,
   * reads of one sequential scan arrive up to 4 MiB ahead of and 8 MiB
   * behind the furthest one).  A read further away starts another
   * stream, even inside what was fetched ahead for this one.  Default
   * 8 MiB, to cover that reordering: a tolerance smaller than it breaks
   * such a scan into new streams, each starting over at min_window, so
   * its window never grows (docs/benchmarks.md has the measurements).
   */
  uint64_t gap;
  /* No range advised is shorter than this, nor than the window, except
   * one that ends at device_size: a refill that budget or the lead would
   * make shorter waits for a later read.  Default 1 MiB;
   * PREFETCH_MIN_ADVICE_OFF (1 byte, which any range is) turns it off,
   * since 0 means the default here as in every other field.
   */
  uint64_t min_advice;
  uint64_t device_size; /* ranges never go past it; no default */
};

#define PREFETCH_MIN_ADVICE_OFF 1

struct prefetch_range
{
  uint64_t off, len; /* device bytes */
};

struct prefetch_stats
{
  uint64_t reads, sequential_reads, streams_started, bytes_advised;
};

struct prefetch;

/* NULL on ENOMEM.  Zero fields of cfg take the defaults (device_size
 * has none: 0 is an empty device, with nothing to advise).
 */
struct prefetch *prefetch_new (const struct prefetch_config *cfg);
void prefetch_free (struct prefetch *p);

/* Records a read of [off, off + len) and returns how many ranges it put
 * in out (at most max_out): what to fetch ahead now, in device order, not
 * overlapping anything advised before for the same stream, and adding up
 * to at most budget bytes (what the global readahead budget allows now).
 * When budget cuts a range short, the rest is advised on a later read
 * of the stream; a budget too small for min_advice gets nothing until it
 * has grown.  Today it is at most one range (max_out 0 or budget 0:
 * none, and nothing is lost), and most reads of a sequential stream get
 * none: see "in batches" above.
 */
size_t prefetch_advise (struct prefetch *p, uint64_t off, uint64_t len,
                        uint64_t budget, struct prefetch_range *out,
                        size_t max_out);

void prefetch_get_stats (const struct prefetch *p, struct prefetch_stats *s);

#endif
