/* nbdkit-s3bd-plugin: reads and extents through the index's map.
 *
 * A device range is cut where the map changes kind (metadata, hole, an
 * object's data): metadata comes from the index, holes are zeros, and
 * data comes from the cache, with the tail of an object's last block past
 * its size read as zeros.
 */
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "plugin.h"

/* The piece of [offset, offset + count) that starts at offset and has one
 * source; returns its length.
 */
static uint64_t
piece (uint64_t offset, uint64_t count, struct index_lookup *l)
{
  uint64_t bs = s3bd.idx.block_size;
  uint64_t in = offset % bs;
  uint64_t n;

  index_lookup (&s3bd.idx, offset / bs, l);
  /* l->count blocks of the same source from this block on. */
  n = l->count * bs - in;
  if (l->kind == INDEX_META)
    n = bs - in;          /* metadata blocks are looked up one by one */
  return n < count ? n : count;
}

int
read_range (void *buf, uint64_t count, uint64_t offset,
            struct s3bd_error *err)
{
  uint64_t bs = s3bd.idx.block_size;
  unsigned char *p = buf;

  while (count)
    {
      struct index_lookup l;
      uint64_t n = piece (offset, count, &l);

      switch (l.kind)
        {
        case INDEX_HOLE:
          memset (p, 0, n);
          break;
        case INDEX_META:
          memcpy (p, l.meta + offset % bs, n);
          break;
        case INDEX_DATA:
          {
            const struct index_object *o = &s3bd.idx.objects[l.object];
            uint64_t ooff = l.object_block * bs + offset % bs;
            uint64_t real = ooff < o->size ? o->size - ooff : 0;

            if (real > n)
              real = n;
            if (real
                && cache_read (s3bd.cache, l.object, o->size, ooff, real, p,
                               err) == -1)
              return -1;
            memset (p + real, 0, n - real);
            break;
          }
        }
      p += n;
      offset += n;
      count -= n;
    }
  return 0;
}

void
prefetch_range (uint64_t offset, uint64_t count)
{
  uint64_t bs = s3bd.idx.block_size;
  uint64_t size = s3bd.idx.device_blocks * bs;

  if (offset >= size)
    return;
  if (count > size - offset)
    count = size - offset;
  while (count)
    {
      struct index_lookup l;
      uint64_t n = piece (offset, count, &l);

      if (l.kind == INDEX_DATA)
        {
          const struct index_object *o = &s3bd.idx.objects[l.object];
          uint64_t ooff = l.object_block * bs + offset % bs;

          if (ooff < o->size)
            cache_prefetch (s3bd.cache, l.object, o->size, ooff,
                            n < o->size - ooff ? n : o->size - ooff);
        }
      offset += n;
      count -= n;
    }
}

int
map_extents (uint32_t count, uint64_t offset,
             struct nbdkit_extents *extents)
{
  uint64_t left = count;

  while (left)
    {
      struct index_lookup l;
      uint64_t n = piece (offset, left, &l);

      if (nbdkit_add_extent (extents, offset, n,
                             l.kind == INDEX_HOLE
                             ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0)
          == -1)
        return -1;
      offset += n;
      left -= n;
    }
  return 0;
}
