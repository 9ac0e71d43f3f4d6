/* s3bd: building the index of a source.  See include/s3bd/build.h.
 *
 * The steps: the objects (a listing of the prefix, a saved listing, or a
 * manifest's entries looked up by listing their common prefixes) become
 * a dataset (dataset.c: key-to-path rules, sorted); one shard of it is
 * kept; ext4.c lays out and writes the metadata; the files' places and
 * the metadata blocks, as runs, go into the index, which index.c checks
 * and encodes.  Memory at the peak: the listing, the dataset, the image's
 * unique metadata blocks and the encoded index; the listing is freed as
 * soon as the dataset has copied it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/sha.h>

#include "s3bd/build.h"
#include "s3bd/parse.h"
#include "s3bd/ext4.h"
#include "s3bd/index.h"

#include "indexint.h"
#include "common/arena.h"

#define MAX_ATTRS 64
#define EXT4_LABEL_MAX 16 /* ext4_params.label, not NUL-terminated */
_Static_assert(sizeof ((struct ext4_params *)0)->label == EXT4_LABEL_MAX,
               "the label's size");

void
build_opts_init (struct build_opts *o)
{
  memset (o, 0, sizeof *o);
  o->shard_count = 1;
  o->file_mode = 0444;
  o->dir_mode = 0555;
  o->time = -1;
  o->parallel = 16;
}

int
build_opts_set (struct build_opts *o, const char *name, const char *value,
                struct s3bd_error *err)
{
  uint64_t v, n;
  const char *slash;
  char first[32];

  if (strcmp (name, "uid") == 0 || strcmp (name, "gid") == 0)
    {
      if (parse_unsigned (value, 10, UINT32_MAX, &v) == -1)
        return s3bd_fail (err, S3BD_EINVAL,
                          "expected a decimal number, 0 "
                          "to %lu",
                          (unsigned long)UINT32_MAX);
      *(name[0] == 'u' ? &o->uid : &o->gid) = (uint32_t)v;
    }
  else if (strcmp (name, "file-mode") == 0 || strcmp (name, "dir-mode") == 0)
    {
      if (parse_unsigned (value, 8, 07777, &v) == -1)
        return s3bd_fail (err, S3BD_EINVAL,
                          "expected octal permission bits, 0 to 07777");
      *(name[0] == 'f' ? &o->file_mode : &o->dir_mode) = (uint16_t)v;
    }
  else if (strcmp (name, "label") == 0)
    {
      if (strlen (value) > EXT4_LABEL_MAX)
        return s3bd_fail (err, S3BD_EINVAL, "at most %d bytes", EXT4_LABEL_MAX);
      o->label = value;
    }
  else if (strcmp (name, "shard") == 0)
    {
      slash = strchr (value, '/');
      if (slash == NULL || (size_t)(slash - value) >= sizeof first)
        goto bad_shard;
      memcpy (first, value, (size_t)(slash - value));
      first[slash - value] = '\0';
      if (parse_unsigned (first, 10, UINT_MAX, &v) == -1
          || parse_unsigned (slash + 1, 10, UINT_MAX, &n) == -1 || n == 0
          || v >= n)
        goto bad_shard;
      o->shard_index = (unsigned)v;
      o->shard_count = (unsigned)n;
    }
  else
    return 1;
  return 0;

bad_shard:
  return s3bd_fail (err, S3BD_EINVAL, "expected I/N with 0 <= I < N");
}

int64_t
build_source_date_epoch (void)
{
  const char *sde = getenv ("SOURCE_DATE_EPOCH");
  char *end;
  long long v;

  if (sde == NULL || *sde == '\0')
    return -1;
  errno = 0;
  v = strtoll (sde, &end, 10);
  return *end == '\0' && errno == 0 && v >= 0 ? (int64_t)v : -1;
}

void
build_result_free (struct build_result *r)
{
  if (r == NULL)
    return;
  free (r->index);
  dataset_free (&r->ds);
  memset (r, 0, sizeof *r);
}

static void
phase (const struct build_opts *o, const char *what)
{
  if (o->phase)
    o->phase (o->progress_arg, what);
}

/* ---- Reading sources ---- */

/* Reads a local file, or an S3 object when path is an s3:// URI, with a
 * NUL after its last byte.
 */
static char *
read_source (struct s3_client *c, const char *path, size_t *len,
             struct s3bd_error *err)
{
  char *buf = NULL;
  FILE *f;
  struct stat st;

  if (strncmp (path, "s3://", 5) == 0)
    return s3_read_object (c, path, &buf, len, err) == 0 ? buf : NULL;
  f = fopen (path, "rb");
  if (f == NULL || fstat (fileno (f), &st) == -1)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
      if (f)
        fclose (f);
      return NULL;
    }
  buf = malloc ((size_t)st.st_size + 1);
  if (buf == NULL
      || fread (buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
    {
      s3bd_fail (err, S3BD_EIO, "%s: cannot read", path);
      free (buf);
      fclose (f);
      return NULL;
    }
  fclose (f);
  buf[st.st_size] = '\0';
  *len = (size_t)st.st_size;
  return buf;
}

/* A saved listing: "SIZE\tETAG\tMTIME\tKEY" lines; keys outside prefix
 * are not part of this source and are skipped.
 */
static int
read_listing_file (const char *path, const char *prefix, struct s3_listing *l,
                   struct s3bd_error *err)
{
  FILE *f = fopen (path, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  unsigned long lineno = 0;
  int ret = 0;

  if (f == NULL)
    return s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
  while ((n = getline (&line, &cap, f)) != -1)
    {
      char *t1, *t2, *t3, *end;
      uint64_t size;
      long long mtime;

      lineno++;
      if (n && line[n - 1] == '\n')
        line[--n] = '\0';
      if (n == 0)
        continue;
      t1 = strchr (line, '\t');
      t2 = t1 ? strchr (t1 + 1, '\t') : NULL;
      t3 = t2 ? strchr (t2 + 1, '\t') : NULL;
      if (t3 == NULL)
        {
          ret = s3bd_fail (err, S3BD_EINVAL,
                           "%s line %lu: expected "
                           "SIZE<TAB>ETAG<TAB>MTIME<TAB>KEY",
                           path, lineno);
          break;
        }
      *t1 = *t2 = *t3 = '\0';
      errno = 0;
      size = strtoull (line, &end, 10);
      if (errno || *end || end == line)
        {
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: bad size", path,
                           lineno);
          break;
        }
      mtime = strtoll (t2 + 1, &end, 10);
      if (errno || *end || end == t2 + 1)
        {
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: bad mtime", path,
                           lineno);
          break;
        }
      if (strlen (t1 + 1) > MAX_ETAG)
        {
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: ETag over %d bytes",
                           path, lineno, MAX_ETAG);
          break;
        }
      if (strncmp (t3 + 1, prefix, strlen (prefix)) != 0)
        continue;
      if (s3_listing_add (l, t3 + 1, strlen (t3 + 1), t1 + 1, size, mtime, 0)
          == -1)
        {
          ret = s3bd_fail (err, S3BD_ENOMEM, "out of memory");
          break;
        }
    }
  free (line);
  fclose (f);
  if (ret == 0)
    s3_listing_sort (l);
  return ret;
}

/* Looks up every manifest entry: one listing per bucket of the longest
 * common '/'-bounded prefix of its entries, then a binary search by key.
 * found[i] stays zeroed (key NULL) for entries that do not exist.  The
 * listings (one per bucket, in *ls) own the strings found[] points to.
 */
static int
resolve_manifest (struct s3_client *c, const struct manifest *m,
                  unsigned parallel, struct s3_listing **ls, size_t *nls,
                  struct s3_object **found, struct s3bd_error *err)
{
  struct s3_list_opts lo = { .parallel = parallel };

  *found = calloc (m->n ? m->n : 1, sizeof **found);
  *ls = calloc (m->n ? m->n : 1, sizeof **ls);
  *nls = 0;
  if (*found == NULL || *ls == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  for (size_t i = 0; i < m->n; i++)
    {
      const char *bucket = m->v[i].bucket;
      struct s3_listing *l;
      size_t common;
      char *prefix;
      bool seen = false;

      for (size_t j = 0; j < i && !seen; j++)
        seen = strcmp (m->v[j].bucket, bucket) == 0;
      if (seen)
        continue;
      common = strlen (m->v[i].key);
      for (size_t j = i + 1; j < m->n; j++)
        if (strcmp (m->v[j].bucket, bucket) == 0)
          {
            size_t k = 0;

            while (k < common && m->v[j].key[k] == m->v[i].key[k])
              k++;
            common = k;
          }
      /* Cut back to a '/' so that a parallel listing can walk it. */
      while (common > 0 && m->v[i].key[common - 1] != '/')
        common--;
      prefix = strndup (m->v[i].key, common);
      if (prefix == NULL)
        return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      l = &(*ls)[(*nls)++];
      if (s3_list (c, bucket, prefix, &lo, l, err) == -1)
        {
          free (prefix);
          return -1;
        }
      free (prefix);
      for (size_t j = i; j < m->n; j++)
        {
          size_t a = 0, b = l->n;

          if (strcmp (m->v[j].bucket, bucket) != 0)
            continue;
          while (a < b)
            {
              size_t mid = a + (b - a) / 2;
              int r = strcmp (l->objs[mid].key, m->v[j].key);

              if (r == 0)
                {
                  (*found)[j] = l->objs[mid];
                  break;
                }
              if (r < 0)
                a = mid + 1;
              else
                b = mid;
            }
        }
    }
  return 0;
}

/* The augmented manifest's records into ds (which outlives m), the files
 * named by path.
 */
static int
keep_records (struct dataset *ds, const struct manifest *m)
{
  if (m->nrec == 0)
    return 0;
  ds->records = calloc (m->nrec, sizeof *ds->records);
  if (ds->records == NULL)
    return -1;
  for (size_t i = 0; i < m->nrec; i++)
    {
      const struct manifest_record *r = &m->rec[i];
      struct ds_record *d = &ds->records[i];
      const char *s = r->entry == SIZE_MAX ? r->text : m->v[r->entry].path;
      size_t len = r->entry == SIZE_MAX ? r->len : strlen (s);
      char *copy = s3_arena_strndup (ds->arena, s, len);

      if (copy == NULL)
        return -1;
      d->first = r->first;
      if (r->entry == SIZE_MAX)
        {
          d->text = copy;
          d->len = len;
        }
      else
        d->path = copy;
    }
  ds->nrecords = m->nrec;
  return 0;
}

/* A manifest or augmented manifest -> dataset. */
static int
dataset_of_manifest (struct s3_client *c, const struct build_opts *o,
                     const char *source, struct dataset *ds,
                     struct s3bd_error *err)
{
  struct manifest m = { 0 };
  struct s3_listing *ls = NULL;
  size_t nls = 0, len;
  struct s3_object *found = NULL;
  char *text, *attrs_buf = NULL;
  const char *attrs[MAX_ATTRS];
  size_t nattrs = 0;
  int ret = -1;

  phase (o, "reading the manifest");
  text = read_source (c, source, &len, err);
  if (text == NULL)
    return -1;
  if (o->augmented && o->attrs)
    {
      if ((attrs_buf = strdup (o->attrs)) == NULL)
        {
          s3bd_fail (err, S3BD_ENOMEM, "out of memory");
          goto out;
        }
      for (char *t = attrs_buf; t && nattrs < MAX_ATTRS;)
        {
          char *comma = strchr (t, ',');

          if (comma)
            *comma = '\0';
          if (*t)
            attrs[nattrs++] = t;
          t = comma ? comma + 1 : NULL;
        }
    }
  if ((o->manifest
           ? manifest_parse (text, len, &m, err)
           : augmented_manifest_parse (text, len, attrs, nattrs, &m, err))
      == -1)
    {
      s3bd_error_prefix (err, "%s", source);
      goto out;
    }
  phase (o, "looking up the manifest's objects");
  if (resolve_manifest (c, &m, o->parallel, &ls, &nls, &found, err) == -1
      || dataset_from_manifest (ds, &m, found, err) == -1)
    goto out;
  if (keep_records (ds, &m) == -1)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  ret = 0;
out:
  free (attrs_buf);
  free (text);
  free (found);
  for (size_t i = 0; i < nls; i++)
    s3_listing_free (&ls[i]);
  free (ls);
  manifest_free (&m);
  return ret;
}

/* A prefix (listed, or from a saved listing) -> dataset. */
static int
dataset_of_prefix (struct s3_client *c, const struct build_opts *o,
                   struct dataset *ds, struct s3bd_error *err)
{
  struct s3_list_opts lo = { .parallel = o->parallel,
                             .progress = o->list_progress,
                             .progress_arg = o->progress_arg };
  struct s3_listing l = { 0 };
  char *bucket = NULL, *prefix = NULL;
  int ret = -1;

  if (s3_parse_uri (o->prefix_uri, &bucket, &prefix, err) == -1)
    return -1;
  phase (o, "listing");
  if (o->listing ? read_listing_file (o->listing, prefix, &l, err)
                 : s3_list (c, bucket, prefix, &lo, &l, err))
    goto out;
  ret = dataset_from_listing (ds, bucket, prefix, &l, err);
out:
  s3_listing_free (&l);
  free (bucket);
  free (prefix);
  return ret;
}

/* ---- The image and the index ---- */

/* UUID and hash seed from the source, so the same source gives the same
 * image: SHA-256 over the buckets, the source text and the shard.
 */
static void
derive_identity (const struct dataset *ds, const char *source, unsigned si,
                 unsigned sn, struct ext4_params *p)
{
  unsigned char md[SHA256_DIGEST_LENGTH];
  size_t len = 64 + strlen (source);
  char *buf, *q;

  for (size_t i = 0; i < ds->nbuckets; i++)
    len += strlen (ds->buckets[i]) + 1;
  buf = calloc (1, len);
  if (buf == NULL)
    {
      /* Not fatal: the image is valid with a zero UUID, just not
       * distinguishable from another one.
       */
      memset (p->uuid, 0, sizeof p->uuid);
      return;
    }
  q = buf + snprintf (buf, len, "s3bd-image-v1 %u/%u %s", si, sn, source) + 1;
  for (size_t i = 0; i < ds->nbuckets; i++)
    {
      size_t n = strlen (ds->buckets[i]) + 1;

      memcpy (q, ds->buckets[i], n);
      q += n;
    }
  SHA256 ((const unsigned char *)buf, (size_t)(q - buf), md);
  free (buf);
  memcpy (p->uuid, md, 16);
  p->uuid[6] = (unsigned char)((p->uuid[6] & 0x0f) | 0x40); /* v4 */
  p->uuid[8] = (unsigned char)((p->uuid[8] & 0x3f) | 0x80);
  memcpy (p->hash_seed, md + 16, 16);
}

static int64_t
newest_mtime (const struct dataset *ds)
{
  int64_t t = 0;

  for (size_t i = 0; i < ds->nfiles; i++)
    if (ds->files[i].mtime > t)
      t = ds->files[i].mtime;
  return t;
}

/* Metadata blocks -> runs of the index: consecutive blocks whose
 * contents are consecutive, or the same content repeated.
 */
static int
meta_runs (const struct ext4_image *img, struct index_meta_run **runs,
           uint64_t *nruns)
{
  struct index_meta_run *r = malloc ((img->nmeta ? img->nmeta : 1) * sizeof *r);
  size_t n = 0;

  if (r == NULL)
    return -1;
  for (size_t i = 0; i < img->nmeta; i++)
    {
      const struct ext4_meta_block *m = &img->meta[i];

      if (n > 0)
        {
          struct index_meta_run *last = &r[n - 1];

          if (m->block == last->block + last->count && last->count < UINT32_MAX)
            {
              if (last->count == 1)
                last->repeated = m->content == last->first;
              if (last->repeated ? m->content == last->first
                                 : m->content == last->first + last->count)
                {
                  last->count++;
                  continue;
                }
            }
        }
      r[n++] = (struct index_meta_run){ m->block, 1, m->content, false };
    }
  *runs = r;
  *nruns = n;
  return 0;
}

/* The left-out keys as the index holds them, into left[]: a key longer
 * than an index key may be (DS_KEY_TOO_LONG) keeps its first MAX_KEY
 * bytes, cut back to a whole UTF-8 character, in *cuts (to free).
 */
static int
index_leftouts (const struct dataset *ds, struct index_leftout *left,
                char **cuts)
{
  size_t nlong = 0, k = 0, n;
  const char *key;
  char *c;

  for (size_t i = 0; i < ds->nleft; i++)
    nlong += strlen (ds->left[i].key) > MAX_KEY;
  *cuts = c = nlong ? calloc (nlong, MAX_KEY + 1) : NULL;
  if (nlong && c == NULL)
    return -1;
  for (size_t i = 0; i < ds->nleft; i++)
    {
      key = ds->left[i].key;
      if (strlen (key) > MAX_KEY)
        {
          /* A UTF-8 sequence is at most 4 bytes: look no further back. */
          n = MAX_KEY;
          while (n > MAX_KEY - 3 && ((unsigned char)key[n] & 0xc0) == 0x80)
            n--;
          memcpy (c + k * (MAX_KEY + 1), key, n);
          key = c + k++ * (MAX_KEY + 1);
        }
      left[i] = (struct index_leftout){ key, ds->left[i].bucket,
                                        ds->left[i].reason };
    }
  return 0;
}

/* The file of ds at path (ds->files is sorted by path), or -1. */
static int64_t
file_at (const struct dataset *ds, const char *path)
{
  size_t a = 0, b = ds->nfiles;

  while (a < b)
    {
      size_t mid = a + (b - a) / 2;
      int r = strcmp (ds->files[mid].path, path);

      if (r == 0)
        return (int64_t)mid;
      if (r < 0)
        a = mid + 1;
      else
        b = mid;
    }
  return -1;
}

/* ds's records as the index's (objects[i] is files[i]): a line one of
 * whose files is not in the image (left out, or in another shard) is
 * left out whole, counted in *dropped, so that a line's records stay
 * together.
 */
static int
index_records (const struct dataset *ds, struct index_record **out, uint64_t *n,
               size_t *dropped)
{
  struct index_record *v;
  size_t k = 0;

  *out = NULL;
  *n = 0;
  *dropped = 0;
  if (ds->nrecords == 0)
    return 0;
  v = calloc (ds->nrecords, sizeof *v);
  if (v == NULL)
    return -1;
  for (size_t s = 0, e; s < ds->nrecords; s = e)
    {
      bool whole = true;
      size_t start = k;

      for (e = s + 1; e < ds->nrecords && !ds->records[e].first; e++)
        ;
      for (size_t i = s; i < e && whole; i++)
        {
          const struct ds_record *r = &ds->records[i];
          int64_t f = r->path ? file_at (ds, r->path) : -1;

          if (r->path && f < 0)
            whole = false;
          else
            v[k++] = (struct index_record){ r->path ? (uint64_t)f
                                                    : INDEX_RECORD_INLINE,
                                            r->path ? NULL : r->text,
                                            (uint32_t)r->len, i == s };
        }
      if (!whole)
        {
          k = start;
          ++*dropped;
        }
    }
  *out = v;
  *n = k;
  return 0;
}

/* The dataset -> the ext4 image -> the encoded index, in out. */
static int
encode_dataset (const struct build_opts *o, const char *source,
                struct build_result *out, struct s3bd_error *err)
{
  const struct dataset *ds = &out->ds;
  struct ext4_file *files = NULL;
  struct ext4_image img = { 0 };
  struct ext4_params p = { .uid = o->uid,
                           .gid = o->gid,
                           .file_mode = o->file_mode,
                           .dir_mode = o->dir_mode };
  struct s3bd_index idx = { 0 };
  struct index_object *objs = NULL;
  struct index_leftout *left = NULL;
  struct index_record *records = NULL;
  char *cuts = NULL;
  bool sharded = o->shard_count > 1;
  int ret = -1;

  phase (o, "building the ext4 image");
  files = calloc (ds->nfiles, sizeof *files);
  objs = calloc (ds->nfiles, sizeof *objs);
  left = calloc (ds->nleft ? ds->nleft : 1, sizeof *left);
  if (files == NULL || objs == NULL || left == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  for (size_t i = 0; i < ds->nfiles; i++)
    files[i]
        = (struct ext4_file){ ds->files[i].path, ds->files[i].size,
                              ds->files[i].mtime, ds->files[i].mtime_nsec, 0 };
  /* Unsharded is 0/1 whichever way it was said: the UUID must not
   * change with the spelling.
   */
  derive_identity (ds, source, sharded ? o->shard_index : 0,
                   sharded ? o->shard_count : 1, &p);
  p.time = o->time >= 0 ? o->time : newest_mtime (ds);
  if (o->label)
    memcpy (p.label, o->label, strlen (o->label));
  if (ext4_build (&p, files, ds->nfiles, ds->dirs, ds->ndirs, &img, err) == -1)
    goto out;

  phase (o, "encoding the index");
  for (size_t i = 0; i < ds->nfiles; i++)
    {
      objs[i]
          = (struct index_object){ ds->files[i].key,    ds->files[i].etag,
                                   ds->files[i].bucket, ds->files[i].size,
                                   ds->files[i].mtime,  ds->files[i].mtime_nsec,
                                   files[i].first_block };
      out->bytes += ds->files[i].size;
    }
  if (index_leftouts (ds, left, &cuts) == -1)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  idx.block_size = EXT4_BLOCK_SIZE;
  idx.device_blocks = img.blocks_count;
  idx.data_start = img.data_start;
  idx.source_kind = o->manifest    ? INDEX_SOURCE_MANIFEST
                    : o->augmented ? INDEX_SOURCE_AUGMENTED_MANIFEST
                                   : INDEX_SOURCE_PREFIX;
  idx.prefix = o->prefix_uri ? ds->prefix : source;
  idx.buckets = (const char **)ds->buckets;
  idx.nbuckets = (uint32_t)ds->nbuckets;
  idx.shard_index = sharded ? o->shard_index : 0;
  idx.shard_count = sharded ? o->shard_count : 1;
  idx.created = p.time;
  idx.objects = objs;
  idx.nobjects = ds->nfiles;
  idx.content = img.content;
  idx.ncontent = img.ncontent;
  idx.left = left;
  idx.nleft = ds->nleft;
  if (meta_runs (&img, &idx.runs, &idx.nruns) == -1
      || index_records (ds, &records, &idx.nrecords, &out->lines_dropped) == -1)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  idx.records = records;
  out->records = idx.nrecords;
  if (index_encode (&idx, &out->index, &out->index_len, err) == -1)
    goto out;
  out->device_blocks = img.blocks_count;
  out->dirs = img.dirs;
  ret = 0;
out:
  free (idx.runs);
  free (records);
  free (objs);
  free (left);
  free (cuts);
  free (files);
  ext4_image_free (&img);
  return ret;
}

static int
check_opts (struct s3_client *c, const struct build_opts *o,
            struct s3bd_error *err)
{
  int sources = !!o->prefix_uri + !!o->manifest + !!o->augmented;

  if (sources != 1)
    return s3bd_fail (err, S3BD_EINVAL,
                      "give exactly one source: a "
                      "prefix, a manifest or an augmented manifest");
  if (o->listing && !o->prefix_uri)
    return s3bd_fail (err, S3BD_EINVAL,
                      "a saved listing is the listing "
                      "of a prefix: give the prefix too");
  if (c == NULL && !o->listing)
    return s3bd_fail (err, S3BD_EINVAL, "listing %s needs an S3 client",
                      o->prefix_uri ? o->prefix_uri
                      : o->manifest ? o->manifest
                                    : o->augmented);
  if (o->shard_count > 1 && o->shard_index >= o->shard_count)
    return s3bd_fail (err, S3BD_EINVAL,
                      "shard %u/%u: the index must be "
                      "below the count",
                      o->shard_index, o->shard_count);
  if (o->label && strlen (o->label) > EXT4_LABEL_MAX)
    return s3bd_fail (err, S3BD_EINVAL, "label '%s': at most 16 bytes",
                      o->label);
  if ((o->file_mode | o->dir_mode) & ~07777)
    return s3bd_fail (err, S3BD_EINVAL,
                      "modes are permission bits: at "
                      "most 07777");
  return 0;
}

int
build_index (struct s3_client *c, const struct build_opts *o,
             struct build_result *out, struct s3bd_error *err)
{
  const char *source = o->manifest    ? o->manifest
                       : o->augmented ? o->augmented
                                      : o->prefix_uri;

  memset (out, 0, sizeof *out);
  if (check_opts (c, o, err) == -1)
    return -1;
  if ((o->prefix_uri ? dataset_of_prefix (c, o, &out->ds, err)
                     : dataset_of_manifest (c, o, source, &out->ds, err))
      == -1)
    goto fail;
  if (o->shard_count > 1)
    dataset_shard (&out->ds, o->shard_index, o->shard_count);
  if (out->ds.nfiles == 0)
    {
      s3bd_fail (err, S3BD_EINVAL, "%s: no objects to serve%s", source,
                 out->ds.nleft ? " (every key was left out)" : "");
      goto fail;
    }
  if (encode_dataset (o, source, out, err) == -1)
    goto fail;
  return 0;

fail:
  build_result_free (out);
  return -1;
}
