/* s3bd: hydration — the device's bytes kept on local storage.
 *
 * A hydration is a local copy of the image being made: a file (sparse,
 * the device's size) or a block device, and a state file that says which
 * of its bytes are there.  It is a fetch backend that wraps another (the
 * S3 one): every range the cache fetches is also written to the copy,
 * and serve reads the ranges already there from the copy, bypassing the
 * cache.  With fill, a thread of its own fetches everything else in
 * device order, metadata first, in large GETs with many in flight, and
 * yields to the cache's fetches.  s3bd-preload is a hydration with a
 * fill and no reader.
 *
 * Object bytes are tracked in units of HYDRATE_UNIT bytes of each object
 * (an object's last unit is shorter).  A unit is present once all its
 * bytes are written, and durable once an fdatasync after that has
 * returned; only durable units go into the state file, which is
 * replaced atomically every second.  So after a crash every unit the
 * state says is there is there, and at most what was in flight is
 * fetched again.  The state is bound to the image by index_digest and
 * refused for another.  Format: docs/hydrate-format.md.
 */
#ifndef S3BD_HYDRATE_H
#define S3BD_HYDRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/cache.h"
#include "s3bd/error.h"
#include "s3bd/fetch.h"
#include "s3bd/index.h"

#define HYDRATE_UNIT_SHIFT 18 /* 256 KiB */
#define HYDRATE_UNIT (1ULL << HYDRATE_UNIT_SHIFT)
/* The default largest fill GET. */
#define HYDRATE_FILL_GET (8ULL << 20)

struct hydrate_config
{
  const struct s3bd_index *idx; /* must outlive the hydration */
  const char *path;             /* a regular file or a block device */
  /* NULL: path + ".s3bd-state", for a file; required for a device. */
  const char *state_path;
  /* Where missing bytes come from; the hydration owns it from
   * hydrate_new on (even when that fails) and starts, stops and frees
   * it with itself.
   */
  struct fetcher *inner;
  bool fill;              /* fetch everything, not only what is read */
  unsigned fill_requests; /* fill GETs in flight, >= 1 */
  uint64_t fill_budget;   /* fill bytes in flight */
  uint64_t fill_get_size; /* largest fill GET, >= HYDRATE_UNIT */
  uint64_t fill_rate;     /* bytes per second the fill may fetch; 0: any */
  /* Keep the copy's pages in the page cache.  Off (the default), the
   * syncer drops them once a second: a reader of the device has its own
   * page cache above it.  A Pipe export reads the copy directly and has
   * no other cache, so it keeps them (the kernel still evicts clean
   * pages under pressure).
   */
  bool keep_pages;
  /* How messages name the two: NULL for the plugin's "hydrate=" and
   * "hydrate-state=PATH"; s3bd-preload's are "" and "--state PATH".
   */
  const char *path_opt, *state_opt;
  s3bd_log_fn *log; /* NULL: say nothing */
  int verbose;
};

struct hydrate;

/* Opens (or creates) the copy and its state and checks them against the
 * index: a copy too small, a device mounted or in use, a state of
 * another image, a truncated or corrupt state, a file of the same name
 * that is not a copy: -1 with err saying what and what to do, and
 * nothing on disk changed.  The result is a fetcher (hydrate_fetcher)
 * that starts nothing until fetcher_start.
 */
int hydrate_new (const struct hydrate_config *cfg, struct hydrate **out,
                 struct s3bd_error *err);

/* The fetcher to give the cache: start, stop and free the hydration
 * through it (fetcher_free frees the hydration and the inner fetcher).
 * Stop finishes the fill's GETs and the writes in flight, and writes the
 * state a last time.
 */
struct fetcher *hydrate_fetcher (struct hydrate *h);

/* Every byte is on the copy, durably: S3 is not needed. */
bool hydrate_complete (struct hydrate *h);

/* Serve's reads of object bytes: the units present are read from the
 * copy, the rest through the cache (which fetches them through the
 * hydration, so they are written too).
 */
int hydrate_read (struct hydrate *h, struct cache *c, uint64_t object,
                  uint64_t object_size, uint64_t off, uint64_t len, void *buf,
                  struct s3bd_error *err);
/* Where object bytes [off, off + len) are on the copy, when every one of
 * them is there: 0 with *fd (the copy's descriptor, open as long as the
 * hydration) and *fd_off set; else -1.  For consumers that move the
 * bytes without reading them (splice) and count them themselves: not in
 * local_reads.
 */
int hydrate_locate (struct hydrate *h, uint64_t object, uint64_t off,
                    uint64_t len, int *fd, uint64_t *fd_off);
/* Readahead: cache_prefetch of what is not present. */
void hydrate_prefetch (struct hydrate *h, struct cache *c, uint64_t object,
                       uint64_t object_size, uint64_t off, uint64_t len);

struct hydrate_stats
{
  uint64_t total_bytes;   /* metadata and object bytes of the image */
  uint64_t present_bytes; /* of those, on the copy */
  uint64_t demand_gets;   /* the cache's fetches sent on */
  uint64_t fill_gets, fill_bytes;
  uint64_t fill_failures;            /* fill GETs that failed */
  uint64_t local_reads, local_bytes; /* reads served by the copy */
  uint64_t write_errors;
  /* Objects larger than a fill GET, read back once complete and checked
   * against their ETag's MD5; those that did not match (fetched again).
   */
  uint64_t verified, verify_mismatches;
  uint64_t fill_ms;  /* how long the fill has run (or ran) */
  bool fill_running; /* started and not finished */
  bool complete;
};

void hydrate_get_stats (struct hydrate *h, struct hydrate_stats *s);
/* "; hydrate: P of T bytes (x%), fill R MB/s, ETA ...": appended to
 * serve's stats line.
 */
void hydrate_stats_line (struct hydrate *h, char *buf, size_t n);

/* Waits up to timeout_ms for the fill to finish (every unit tried once);
 * true once it has.  A hydration without fill is finished at once.
 */
bool hydrate_wait_fill (struct hydrate *h, int timeout_ms);

#endif
