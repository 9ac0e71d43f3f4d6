/* s3bd: what dataset.c (building datasets) and manifest.c (parsing
 * manifests) share: the growing array and the interned bucket names.
 * Private to lib/.
 */
#ifndef S3BD_DATASETINT_H
#define S3BD_DATASETINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "s3bd/dataset.h"

/* Open addressing, linear probing, at most half full.  The map does not
 * own its strings.
 */
struct strmap
{
  const char **keys; /* NULL: free slot */
  uint32_t *vals;
  size_t cap; /* a power of two, or 0 */
  size_t n;
};

/* A list of bucket names, interned: index of name, adding a copy (in
 * arena) when it is new.  All zeros is an empty list.
 */
struct buckets
{
  char **v;
  size_t n, cap;
  struct strmap map;
};

/* Makes room for one more element in a growing array: *v has *cap
 * elements of elsize bytes, n of them used.  -1 on ENOMEM.
 */
int ds_grow (void **v, size_t *cap, size_t n, size_t elsize);

/* The index of bucket name in b, into *out; a new name is copied into
 * arena.  -1 on ENOMEM or past UINT32_MAX buckets.
 */
int ds_bucket_index (struct buckets *b, struct s3_arena *a, const char *name,
                     uint32_t *out);

/* Frees the list and the map, not the names (they are in the arena). */
void ds_buckets_free (struct buckets *b);

#endif
