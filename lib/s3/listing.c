/* s3bd: a listing of objects and the arena that holds their strings.
 *
 * A bucket can hold millions of keys.  One malloc per key and one per
 * ETag would cost two allocations per object and about as much again in
 * allocator overhead, so the strings of a listing are copied into large
 * blocks instead and freed all at once with the listing.  A string is
 * never freed alone; a page that fails to parse just drops its objects
 * (n goes back) and leaves their bytes in the arena until the listing is
 * freed.
 *
 * Who owns what: the listing owns objs and the arena; every key and etag
 * pointer in objs points into the arena.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "s3bd/s3.h"

void
s3_listing_free (struct s3_listing *l)
{
  if (l == NULL)
    return;
  free (l->objs);
  s3_arena_free (l->arena);
  memset (l, 0, sizeof *l);
}

/* Makes room for one more object. */
static int
listing_reserve (struct s3_listing *l)
{
  struct s3_object *objs;
  size_t cap;

  if (l->n < l->cap)
    return 0;
  if (l->cap == 0)
    cap = 1024;
  else if (l->cap > SIZE_MAX / 2 / sizeof *objs)
    return -1;
  else
    cap = l->cap * 2;
  objs = realloc (l->objs, cap * sizeof *objs);
  if (objs == NULL)
    return -1;
  l->objs = objs;
  l->cap = cap;
  return 0;
}

int
s3_listing_add (struct s3_listing *l, const char *key, size_t keylen,
                const char *etag, uint64_t size, int64_t mtime,
                uint32_t mtime_nsec)
{
  struct s3_object *o;
  size_t etaglen;
  char *p;

  if (etag == NULL)
    etag = "";
  etaglen = strlen (etag);
  /* Key and etag go into one piece of the arena, each with its NUL. */
  if (keylen > SIZE_MAX - 2 || etaglen > SIZE_MAX - 2 - keylen)
    return -1;

  if (listing_reserve (l) == -1)
    return -1;
  if (l->arena == NULL)
    {
      l->arena = s3_arena_new ();
      if (l->arena == NULL)
        return -1;
    }
  p = s3_arena_alloc (l->arena, keylen + 1 + etaglen + 1);
  if (p == NULL)
    return -1;

  o = &l->objs[l->n++];
  o->key = p;
  memcpy (p, key, keylen);
  p[keylen] = '\0';
  o->etag = p + keylen + 1;
  memcpy (o->etag, etag, etaglen + 1);
  o->size = size;
  o->mtime = mtime;
  o->mtime_nsec = mtime_nsec;
  return 0;
}

/* Byte order of the keys: strcmp compares as unsigned char, which for
 * UTF-8 is code point order, as S3 lists.  Keys are unique in one
 * listing; the rest only makes the order total, so that the same input
 * always sorts the same way.
 */
static int
compare_objects (const void *pa, const void *pb)
{
  const struct s3_object *a = pa, *b = pb;
  int r;

  r = strcmp (a->key, b->key);
  if (r != 0)
    return r;
  r = strcmp (a->etag, b->etag);
  if (r != 0)
    return r;
  if (a->size != b->size)
    return a->size < b->size ? -1 : 1;
  if (a->mtime != b->mtime)
    return a->mtime < b->mtime ? -1 : 1;
  if (a->mtime_nsec != b->mtime_nsec)
    return a->mtime_nsec < b->mtime_nsec ? -1 : 1;
  return 0;
}

void
s3_listing_sort (struct s3_listing *l)
{
  if (l->n > 1)
    qsort (l->objs, l->n, sizeof *l->objs, compare_objects);
}
