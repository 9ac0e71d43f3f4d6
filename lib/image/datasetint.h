/* s3bd: what dataset.c (building datasets) and manifest.c (parsing
 * manifests) share: the interned bucket names, the UTF-8 check.
 * Private to lib/.
 */
#ifndef S3BD_DATASETINT_H
#define S3BD_DATASETINT_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/hashmap.h"
#include "common/vector.h"
#include "s3bd/dataset.h"

DEFINE_VECTOR (name_vector, char *);

/* A list of bucket names, interned: index of name, adding a copy (in
 * arena) when it is new.  All zeros is an empty list.
 */
struct buckets
{
  struct name_vector names;
  struct hashmap map; /* name -> index in names + 1 */
};

/* The index of bucket name in b, into *out; a new name is copied into
 * arena.  -1 on ENOMEM or past UINT32_MAX buckets.
 */
int ds_bucket_index (struct buckets *b, struct s3_arena *a, const char *name,
                     uint32_t *out);

/* Frees the list and the map, not the names (they are in the arena). */
void ds_buckets_free (struct buckets *b);

/* How many leading bytes of s[0..n) are strict UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF; NUL counts as
 * valid here): n when all are.
 */
size_t ds_utf8_valid_prefix (const char *s, size_t n);

#endif
