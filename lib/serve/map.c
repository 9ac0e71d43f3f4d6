/* s3bd: reads and extents through the index's map.  See map.h. */
#include <string.h>

#include "s3bd/map.h"

/* The piece of [offset, offset + count) that starts at offset and has one
 * source; returns its length.
 */
static uint64_t
piece (const struct s3bd_index *idx, uint64_t offset, uint64_t count,
       struct index_lookup *l)
{
  uint64_t bs = idx->block_size;
  uint64_t in = offset % bs;
  uint64_t n;

  index_lookup (idx, offset / bs, l);
  /* l->count blocks of the same source from this block on. */
  n = l->count * bs - in;
  if (l->kind == INDEX_META)
    n = bs - in; /* metadata blocks are looked up one by one */
  return n < count ? n : count;
}

static int
cache_source_read (void *arg, uint64_t object, uint64_t object_size,
                   uint64_t off, uint64_t len, void *buf,
                   struct s3bd_error *err)
{
  return cache_read (arg, object, object_size, off, len, buf, err);
}

static void
cache_source_prefetch (void *arg, uint64_t object, uint64_t object_size,
                       uint64_t off, uint64_t len)
{
  cache_prefetch (arg, object, object_size, off, len);
}

struct map_source
map_cache_source (struct cache *c)
{
  return (struct map_source){ cache_source_read, cache_source_prefetch, c };
}

int
map_read (const struct s3bd_index *idx, struct cache *c, void *buf,
          uint64_t count, uint64_t offset, struct s3bd_error *err)
{
  struct map_source src = map_cache_source (c);

  return map_read_from (idx, &src, buf, count, offset, err);
}

void
map_prefetch (const struct s3bd_index *idx, struct cache *c, uint64_t offset,
              uint64_t count)
{
  struct map_source src = map_cache_source (c);

  map_prefetch_from (idx, &src, offset, count);
}

int
map_read_from (const struct s3bd_index *idx, const struct map_source *src,
               void *buf, uint64_t count, uint64_t offset,
               struct s3bd_error *err)
{
  uint64_t bs = idx->block_size;
  unsigned char *p = buf;

  while (count)
    {
      struct index_lookup l;
      uint64_t n = piece (idx, offset, count, &l);

      switch (l.kind)
        {
        case INDEX_HOLE: memset (p, 0, n); break;
        case INDEX_META: memcpy (p, l.meta + offset % bs, n); break;
        case INDEX_DATA:
          {
            const struct index_object *o = &idx->objects[l.object];
            uint64_t ooff = l.object_block * bs + offset % bs;
            uint64_t real = ooff < o->size ? o->size - ooff : 0;

            if (real > n)
              real = n;
            if (real
                && src->read (src->arg, l.object, o->size, ooff, real, p, err)
                       == -1)
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
map_prefetch_from (const struct s3bd_index *idx, const struct map_source *src,
                   uint64_t offset, uint64_t count)
{
  uint64_t bs = idx->block_size;
  uint64_t size = idx->device_blocks * bs;

  if (offset >= size)
    return;
  if (count > size - offset)
    count = size - offset;
  while (count)
    {
      struct index_lookup l;
      uint64_t n = piece (idx, offset, count, &l);

      if (l.kind == INDEX_DATA)
        {
          const struct index_object *o = &idx->objects[l.object];
          uint64_t ooff = l.object_block * bs + offset % bs;

          if (ooff < o->size)
            src->prefetch (src->arg, l.object, o->size, ooff,
                           n < o->size - ooff ? n : o->size - ooff);
        }
      offset += n;
      count -= n;
    }
}

int
map_extents (const struct s3bd_index *idx, uint64_t offset, uint64_t count,
             map_extent_fn *fn, void *arg)
{
  while (count)
    {
      struct index_lookup l;
      uint64_t n = piece (idx, offset, count, &l);

      if (fn (arg, offset, n, l.kind == INDEX_HOLE) == -1)
        return -1;
      offset += n;
      count -= n;
    }
  return 0;
}
