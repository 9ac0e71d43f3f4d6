/* s3bd: the device through the index's map.
 *
 * A device range is cut where the map changes kind (metadata, hole, an
 * object's data): metadata comes from the index, holes are zeros, and
 * data comes from the chunk cache, with the tail of an object's last
 * block past its size read as zeros.
 */
#ifndef S3BD_MAP_H
#define S3BD_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "s3bd/cache.h"
#include "s3bd/error.h"
#include "s3bd/index.h"

/* Where object bytes come from: the cache, or a hydration's copy in
 * front of it (hydrate_read, hydrate_prefetch).
 */
struct map_source
{
  int (*read) (void *arg, uint64_t object, uint64_t object_size, uint64_t off,
               uint64_t len, void *buf, struct s3bd_error *err);
  void (*prefetch) (void *arg, uint64_t object, uint64_t object_size,
                    uint64_t off, uint64_t len);
  void *arg;
};

/* The plain source: the cache alone. */
struct map_source map_cache_source (struct cache *c);

/* Device bytes [offset, offset + count) into buf; offset + count must
 * not pass the device's end.  -1 with err set when a fetch failed.
 */
int map_read (const struct s3bd_index *idx, struct cache *c, void *buf,
              uint64_t count, uint64_t offset, struct s3bd_error *err);
int map_read_from (const struct s3bd_index *idx, const struct map_source *src,
                   void *buf, uint64_t count, uint64_t offset,
                   struct s3bd_error *err);

/* Starts fetching the object bytes under [offset, offset + count),
 * without waiting (cache_prefetch); the range is cut at the device end.
 */
void map_prefetch (const struct s3bd_index *idx, struct cache *c,
                   uint64_t offset, uint64_t count);
void map_prefetch_from (const struct s3bd_index *idx,
                        const struct map_source *src, uint64_t offset,
                        uint64_t count);

/* Calls fn for each run of [offset, offset + count) of one kind, in
 * order: hole true for unused blocks (read as zeros), false for metadata
 * and data.  Stops at the first fn that returns -1, and returns -1.
 */
typedef int map_extent_fn (void *arg, uint64_t offset, uint64_t len, bool hole);
int map_extents (const struct s3bd_index *idx, uint64_t offset, uint64_t count,
                 map_extent_fn *fn, void *arg);

#endif
