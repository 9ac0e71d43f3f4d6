/* s3bd: datasets — which objects become which files.  See
 * include/s3bd/dataset.h for the key to path rules.
 *
 * How it works.  Every source (a listing, a manifest) goes through the
 * same three steps, built to stay O(n log n) and light for ten million
 * objects:
 *  1. classify, in input order: each object becomes a file candidate, a
 *     directory candidate (a marker), nothing (the root marker), or is
 *     left out, its reason in why[input index];
 *  2. resolve: sort both candidate lists by path (byte order, then input
 *     order); equal paths are neighbours, and the first in input order
 *     wins.  A file is also a directory when a marker has its path or a
 *     path of either list starts with its path and a '/'.  In byte order
 *     the paths that start with P follow P in one block, and those that
 *     start with "P/" form one block starting at the first path >= "P/":
 *     one look at the next path decides, and only when it is P followed
 *     by a byte below '/' ("a", "a.txt", "a/b") does a binary search.  No
 *     set of every parent directory is ever built;
 *  3. assemble: files and directories in sorted order, their strings
 *     copied into the dataset's arena; the left-out keys by walking why[]
 *     in input order.
 * A listing from S3 comes sorted by key, and the paths of its files are
 * then already in order: the sort is skipped after one pass.
 *
 * While building: 16 bytes per candidate (a path pointer into the input
 * and the input index) and one byte per input.  The dataset keeps one
 * struct ds_file per file; its path points into its key when the path is
 * the key's tail, as it always is for listings.
 *
 * Bucket names are interned (one copy each, found through a small hash
 * table), so entries of one bucket share their bucket string.  Manifests
 * are parsed in lib/manifest.c, which interns an augmented manifest's
 * bucket names the same way (lib/datasetint.h).
 */
#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "datasetint.h"
#include "s3bd/dataset.h"

#define NAME_MAX_BYTES 255
/* S3's limit on a key; S3 lists none longer, but a saved listing can. */
#define KEY_MAX_BYTES 1024

const char *
ds_reason_text (enum ds_reason r)
{
  switch (r)
    {
    case DS_EMPTY_SEGMENT: return "empty path segment";
    case DS_DOT_SEGMENT: return "'.' or '..' path segment";
    case DS_NAME_TOO_LONG: return "name longer than 255 bytes";
    case DS_BAD_UTF8: return "invalid UTF-8";
    case DS_MARKER_WITH_DATA: return "directory marker with data";
    case DS_FILE_DIR_COLLISION: return "file is also a directory";
    case DS_DUPLICATE_PATH: return "duplicate path";
    case DS_RESERVED_NAME: return "reserved name (lost+found)";
    case DS_OTHER_SHARD: return "kept by another shard";
    case DS_KEY_TOO_LONG: return "key longer than 1024 bytes";
    }
  return "unknown reason";
}

/* ---- Path rules ---- */

size_t
ds_utf8_valid_prefix (const char *str, size_t n)
{
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, need, k;
  unsigned c, lo, hi;

  while (i < n)
    {
      c = s[i];
      if (c < 0x80)
        {
          i++;
          continue;
        }
      /* The range of the second byte is the one that varies. */
      lo = 0x80;
      hi = 0xbf;
      if (c >= 0xc2 && c <= 0xdf)
        need = 1;
      else if (c == 0xe0)
        {
          need = 2;
          lo = 0xa0; /* else overlong */
        }
      else if (c == 0xed)
        {
          need = 2;
          hi = 0x9f; /* else a surrogate */
        }
      else if (c >= 0xe1 && c <= 0xef)
        need = 2;
      else if (c == 0xf0)
        {
          need = 3;
          lo = 0x90; /* else overlong */
        }
      else if (c >= 0xf1 && c <= 0xf3)
        need = 3;
      else if (c == 0xf4)
        {
          need = 3;
          hi = 0x8f; /* else past U+10FFFF */
        }
      else
        return i; /* a continuation byte, 0xc0, 0xc1, 0xf5.. */
      if (n - i - 1 < need)
        return i;
      if (s[i + 1] < lo || s[i + 1] > hi)
        return i;
      for (k = 2; k <= need; k++)
        if ((s[i + k] & 0xc0) != 0x80)
          return i;
      i += need + 1;
    }
  return n;
}

/* A NUL byte is refused too: no file name can hold one. */
static bool
utf8_valid (const char *s, size_t n)
{
  return memchr (s, '\0', n) == NULL && ds_utf8_valid_prefix (s, n) == n;
}

enum ds_reason
ds_check_path (const char *path, size_t len)
{
  size_t start, seglen;
  const char *seg, *slash;

  if (len == 0)
    return DS_EMPTY_SEGMENT;
  /* '/' is never part of a multibyte sequence, so each segment can be
   * checked for UTF-8 on its own.
   */
  for (start = 0; start <= len; start += seglen + 1)
    {
      seg = path + start;
      slash = memchr (seg, '/', len - start);
      seglen = slash ? (size_t)(slash - seg) : len - start;
      if (seglen == 0)
        return DS_EMPTY_SEGMENT;
      if (seg[0] == '.' && (seglen == 1 || (seglen == 2 && seg[1] == '.')))
        return DS_DOT_SEGMENT;
      if (seglen > NAME_MAX_BYTES)
        return DS_NAME_TOO_LONG;
      if (!utf8_valid (seg, seglen))
        return DS_BAD_UTF8;
      if (start == 0 && seglen == 10 && memcmp (seg, "lost+found", 10) == 0)
        return DS_RESERVED_NAME;
    }
  return 0;
}

/* ---- Interned strings: name -> index (datasetint.h) ---- */

static uint64_t
hash_str (const char *s)
{
  uint64_t h = UINT64_C (14695981039346656037); /* FNV-1a */

  for (; *s; s++)
    {
      h ^= (unsigned char)*s;
      h *= UINT64_C (1099511628211);
    }
  return h;
}

struct name_key
{
  const struct buckets *b;
  const char *name;
};

static bool
name_eq (const void *ctx, uint64_t value)
{
  const struct name_key *k = ctx;

  return strcmp (k->b->names.ptr[value - 1], k->name) == 0;
}

int
ds_bucket_index (struct buckets *b, struct s3_arena *a, const char *name,
                 uint32_t *out)
{
  struct name_key key = { b, name };
  uint64_t hash = hash_str (name);
  struct hashmap_slot *slot = hashmap_lookup (&b->map, hash, name_eq, &key);
  char *copy;

  if (slot)
    {
      *out = (uint32_t)(slot->value - 1);
      return 0;
    }
  if (b->names.len >= UINT32_MAX)
    return -1;
  copy = s3_arena_strndup (a, name, strlen (name));
  if (copy == NULL || name_vector_append (&b->names, copy) == -1
      || hashmap_insert (&b->map, hash, b->names.len) == -1)
    return -1;
  *out = (uint32_t)(b->names.len - 1);
  return 0;
}

void
ds_buckets_free (struct buckets *b)
{
  name_vector_free (&b->names);
  hashmap_free (&b->map);
}

/* ---- Building a dataset ---- */

struct cand
{
  const char *path; /* NUL-terminated */
  size_t src;       /* input index */
};

struct build
{
  size_t n;       /* inputs */
  struct cand *v; /* files at [0, nfiles), dirs at the end */
  size_t nfiles, ndirs;
  unsigned char *why;     /* per input: 0 or an enum ds_reason */
  struct s3_arena *arena; /* the dataset's */
};

/* Where the objects of step 3 come from: for input i, objs[i] (size,
 * etag, mtime), its key (entries[i].key, or objs[i].key when entries is
 * NULL) and its bucket (bucket[i], or 0 when NULL).
 */
struct input
{
  const struct s3_object *objs;
  const struct manifest_entry *entries;
  const uint32_t *bucket;
};

static const char *
input_key (const struct input *in, size_t i)
{
  return in->entries ? in->entries[i].key : in->objs[i].key;
}

static uint32_t
input_bucket (const struct input *in, size_t i)
{
  return in->bucket ? in->bucket[i] : 0;
}

static int
build_init (struct build *b, size_t n, struct s3_arena *arena)
{
  memset (b, 0, sizeof *b);
  b->n = n;
  b->arena = arena;
  /* calloc checks n * size; one byte more keeps n == 0 out of the way. */
  b->v = calloc (n + 1, sizeof *b->v);
  b->why = calloc (n + 1, 1);
  return b->v && b->why ? 0 : -1;
}

static void
build_free (struct build *b)
{
  free (b->v);
  free (b->why);
}

/* Step 1 for one object: path[0..len) (NUL-terminated) of size bytes. */
static int
classify (struct build *b, size_t src, const char *path, size_t len,
          uint64_t size)
{
  enum ds_reason r;
  char *copy;

  assert (b->nfiles + b->ndirs < b->n);
  if (len > 0 && path[len - 1] == '/')
    {
      if (size > 0)
        {
          b->why[src] = DS_MARKER_WITH_DATA;
          return 0;
        }
      r = ds_check_path (path, len - 1);
      if (r != 0)
        {
          b->why[src] = r;
          return 0;
        }
      /* The path without its '/': a copy, which the dataset keeps. */
      copy = s3_arena_strndup (b->arena, path, len - 1);
      if (copy == NULL)
        return -1;
      b->ndirs++;
      b->v[b->n - b->ndirs] = (struct cand){ copy, src };
      return 0;
    }
  r = ds_check_path (path, len);
  if (r != 0)
    {
      b->why[src] = r;
      return 0;
    }
  b->v[b->nfiles++] = (struct cand){ path, src };
  return 0;
}

static int
compare_cands (const void *pa, const void *pb)
{
  const struct cand *a = pa, *b = pb;
  int r = strcmp (a->path, b->path);

  if (r != 0)
    return r;
  return (a->src > b->src) - (a->src < b->src);
}

static void
sort_cands (struct cand *v, size_t n)
{
  size_t i;

  for (i = 1; i < n; i++)
    if (compare_cands (&v[i - 1], &v[i]) > 0)
      {
        qsort (v, n, sizeof *v, compare_cands);
        return;
      }
}

/* s compared with p[0..plen) + "/"; 0 when s starts with that. */
static int
compare_slash (const char *s, const char *p, size_t plen)
{
  int r = strncmp (s, p, plen);
  unsigned char c;

  if (r != 0)
    return r;
  c = (unsigned char)s[plen];
  return c < '/' ? -1 : c > '/';
}

/* Whether a path in v[lo..hi) starts with p[0..plen) + "/", given that v
 * is sorted and every path before lo is <= p: the paths that start with
 * p then begin at lo, and those that start with "p/" at the first path
 * >= "p/".
 */
static bool
has_below (const struct cand *v, size_t lo, size_t hi, const char *p,
           size_t plen)
{
  size_t a, b, mid;
  unsigned char c;

  if (lo >= hi || strncmp (v[lo].path, p, plen) != 0)
    return false;
  c = (unsigned char)v[lo].path[plen];
  if (c == '/')
    return true;
  if (c > '/')
    return false;
  /* p then a byte below '/' ("p.txt", or p itself): search. */
  a = lo + 1;
  b = hi;
  while (a < b)
    {
      mid = a + (b - a) / 2;
      if (compare_slash (v[mid].path, p, plen) < 0)
        a = mid + 1;
      else
        b = mid;
    }
  return a < hi && compare_slash (v[a].path, p, plen) == 0;
}

/* Step 2: duplicates and files that are directories, into why[]. */
static void
resolve (struct build *b)
{
  struct cand *f = b->v, *d = b->v + (b->n - b->ndirs);
  size_t nf = b->nfiles, nd = b->ndirs, i, j, k, m, plen;
  const char *p;
  bool is_dir;

  sort_cands (f, nf);
  sort_cands (d, nd);

  for (i = 1; i < nd; i++)
    if (strcmp (d[i].path, d[i - 1].path) == 0)
      b->why[d[i].src] = DS_DUPLICATE_PATH;

  /* m: the first marker >= the current file path; it only moves on. */
  m = 0;
  for (i = 0; i < nf; i = k)
    {
      p = f[i].path;
      plen = strlen (p);
      for (k = i + 1; k < nf && strcmp (f[k].path, p) == 0; k++)
        ;
      while (m < nd && strcmp (d[m].path, p) < 0)
        m++;
      is_dir = (m < nd && strcmp (d[m].path, p) == 0)
               || has_below (d, m, nd, p, plen)
               || has_below (f, k, nf, p, plen);
      for (j = i; j < k; j++)
        if (is_dir)
          b->why[f[j].src] = DS_FILE_DIR_COLLISION;
        else if (j > i)
          b->why[f[j].src] = DS_DUPLICATE_PATH;
    }
}

/* Step 3: fills ds->files, dirs and left. */
static int
assemble (struct dataset *ds, const struct build *b, const struct input *in)
{
  const struct cand *f = b->v, *d = b->v + (b->n - b->ndirs);
  size_t i, nf = 0, nd = 0, nl = 0, klen, elen, plen;
  const struct s3_object *o;
  struct ds_file *file;
  const char *key, *etag;
  char *p;

  for (i = 0; i < b->nfiles; i++)
    nf += b->why[f[i].src] == 0;
  for (i = 0; i < b->ndirs; i++)
    nd += b->why[d[i].src] == 0;
  for (i = 0; i < b->n; i++)
    nl += b->why[i] != 0;
  ds->files = calloc (nf + 1, sizeof *ds->files);
  ds->dirs = calloc (nd + 1, sizeof *ds->dirs);
  ds->left = calloc (nl + 1, sizeof *ds->left);
  if (ds->files == NULL || ds->dirs == NULL || ds->left == NULL)
    return -1;

  for (i = 0; i < b->nfiles; i++)
    {
      if (b->why[f[i].src] != 0)
        continue;
      o = &in->objs[f[i].src];
      key = input_key (in, f[i].src);
      etag = o->etag ? o->etag : "";
      klen = strlen (key);
      elen = strlen (etag);
      plen = strlen (f[i].path);
      /* Key and etag in one piece of the arena, each with its NUL. */
      if (klen > SIZE_MAX - 2 || elen > SIZE_MAX - 2 - klen)
        return -1;
      p = s3_arena_alloc (b->arena, klen + 1 + elen + 1);
      if (p == NULL)
        return -1;
      file = &ds->files[ds->nfiles++];
      memcpy (p, key, klen + 1);
      memcpy (p + klen + 1, etag, elen + 1);
      file->key = p;
      file->etag = p + klen + 1;
      if (plen <= klen && memcmp (key + klen - plen, f[i].path, plen) == 0)
        file->path = p + klen - plen;
      else
        {
          file->path = s3_arena_strndup (b->arena, f[i].path, plen);
          if (file->path == NULL)
            return -1;
        }
      file->bucket = input_bucket (in, f[i].src);
      file->size = o->size;
      file->mtime = o->mtime;
      file->mtime_nsec = o->mtime_nsec;
    }

  for (i = 0; i < b->ndirs; i++)
    if (b->why[d[i].src] == 0)
      ds->dirs[ds->ndirs++] = d[i].path; /* already in the arena */

  for (i = 0; i < b->n; i++)
    {
      struct ds_leftout *l;

      if (b->why[i] == 0)
        continue;
      key = input_key (in, i);
      l = &ds->left[ds->nleft++];
      l->key = s3_arena_strndup (b->arena, key, strlen (key));
      if (l->key == NULL)
        return -1;
      l->bucket = input_bucket (in, i);
      l->reason = b->why[i];
    }
  assert (ds->nfiles == nf && ds->ndirs == nd && ds->nleft == nl);
  return 0;
}

void
dataset_free (struct dataset *ds)
{
  if (ds == NULL)
    return;
  free (ds->buckets); /* the names are in the arena */
  free (ds->files);
  free (ds->dirs);
  free (ds->left);
  free (ds->records);
  s3_arena_free (ds->arena);
  memset (ds, 0, sizeof *ds);
}

/* The dataset's arena, buckets array and prefix. */
static int
dataset_init (struct dataset *ds, const char *prefix)
{
  memset (ds, 0, sizeof *ds);
  ds->arena = s3_arena_new ();
  if (ds->arena == NULL)
    return -1;
  ds->prefix = s3_arena_strndup (ds->arena, prefix, strlen (prefix));
  return ds->prefix ? 0 : -1;
}

int
dataset_from_listing (struct dataset *ds, const char *bucket,
                      const char *prefix, const struct s3_listing *l,
                      struct s3bd_error *err)
{
  struct input in = { l->objs, NULL, NULL };
  struct build b;
  const char *key, *slash;
  size_t i, prefixlen, dirlen, keylen;

  memset (&b, 0, sizeof b);
  if (dataset_init (ds, prefix) == -1)
    goto nomem;
  ds->buckets = malloc (sizeof *ds->buckets);
  if (ds->buckets == NULL)
    goto nomem;
  ds->buckets[0] = s3_arena_strndup (ds->arena, bucket, strlen (bucket));
  if (ds->buckets[0] == NULL)
    goto nomem;
  ds->nbuckets = 1;

  prefixlen = strlen (prefix);
  slash = memrchr (prefix, '/', prefixlen);
  dirlen = slash ? (size_t)(slash - prefix) + 1 : 0;

  if (build_init (&b, l->n, ds->arena) == -1)
    goto nomem;
  for (i = 0; i < l->n; i++)
    {
      key = l->objs[i].key;
      if (strncmp (key, prefix, prefixlen) != 0)
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "listing of s3://%s/%s: key \"%s\" is not under the "
                     "prefix",
                     bucket, prefix, key);
          goto fail;
        }
      keylen = strlen (key);
      if (keylen > KEY_MAX_BYTES)
        {
          b.why[i] = DS_KEY_TOO_LONG;
          continue;
        }
      if (keylen == dirlen)
        {
          /* The root marker: the root exists anyway. */
          if (l->objs[i].size > 0)
            b.why[i] = DS_MARKER_WITH_DATA;
          continue;
        }
      if (classify (&b, i, key + dirlen, keylen - dirlen, l->objs[i].size)
          == -1)
        goto nomem;
    }
  resolve (&b);
  if (assemble (ds, &b, &in) == -1)
    goto nomem;
  build_free (&b);
  return 0;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "dataset of s3://%s/%s: out of memory", bucket,
             prefix);
fail:
  build_free (&b);
  dataset_free (ds);
  return -1;
}

int
dataset_from_manifest (struct dataset *ds, const struct manifest *m,
                       const struct s3_object *found, struct s3bd_error *err)
{
  struct input in = { found, m->v, NULL };
  struct buckets bk;
  uint32_t *bidx = NULL;
  struct build b;
  size_t i;

  memset (&bk, 0, sizeof bk);
  memset (&b, 0, sizeof b);
  memset (ds, 0, sizeof *ds);
  if (m->n == 0)
    return s3bd_fail (err, S3BD_EINVAL, "manifest: no entries");
  for (i = 0; i < m->n; i++)
    if (found[i].key == NULL)
      return s3bd_fail (err, S3BD_ENOKEY,
                        "manifest entry %zu: s3://%s/%s: no such key", i + 1,
                        m->v[i].bucket, m->v[i].key);

  if (dataset_init (ds, "") == -1)
    goto nomem;
  bidx = calloc (m->n, sizeof *bidx);
  if (bidx == NULL)
    goto nomem;
  for (i = 0; i < m->n; i++)
    if (ds_bucket_index (&bk, ds->arena, m->v[i].bucket, &bidx[i]) == -1)
      goto nomem;
  ds->nbuckets = bk.names.len;
  ds->buckets = name_vector_detach (&bk.names);
  in.bucket = bidx;

  if (build_init (&b, m->n, ds->arena) == -1)
    goto nomem;
  for (i = 0; i < m->n; i++)
    if (classify (&b, i, m->v[i].path, strlen (m->v[i].path), found[i].size)
        == -1)
      goto nomem;
  resolve (&b);
  if (assemble (ds, &b, &in) == -1)
    goto nomem;
  build_free (&b);
  ds_buckets_free (&bk); /* the names are the dataset's now */
  free (bidx);
  return 0;

nomem:
  s3bd_fail (err, S3BD_ENOMEM, "dataset of a manifest: out of memory");
  build_free (&b);
  ds_buckets_free (&bk);
  free (bidx);
  dataset_free (ds);
  return -1;
}

void
dataset_shard (struct dataset *ds, unsigned i, unsigned n)
{
  size_t j, k = 0;

  assert (n == 0 || i < n);
  if (n == 0 || (n == 1 && i == 0))
    return;
  if (i >= n)
    {
      ds->nfiles = 0;
      return;
    }
  for (j = i; j < ds->nfiles; j += n)
    {
      ds->files[k++] = ds->files[j];
      if (ds->nfiles - j <= n)
        break;
    }
  ds->nfiles = k;
}
