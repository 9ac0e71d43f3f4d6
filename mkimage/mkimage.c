/* s3bd-mkimage: builds the index of an S3 prefix or manifest — an ext4
 * image of the dataset's objects, metadata only — and inspects indexes.
 * See docs/mkimage.md.
 *
 * The build: list (or read the manifest and look its objects up), apply
 * the key-to-path rules (dataset.c), keep this host's shard, lay out and
 * write the ext4 metadata (ext4.c), and write the index (index.c)
 * atomically; optionally upload it.  Nothing is written unless all of it
 * succeeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "mkimage.h"
#include "s3bd/dataset.h"
#include "s3bd/ext4.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"
#include "s3opts.h"

static const char usage[] =
  "usage: s3bd-mkimage [OPTIONS] s3://BUCKET/PREFIX -o INDEX\n"
  "       s3bd-mkimage [OPTIONS] --manifest FILE|s3://B/K -o INDEX\n"
  "       s3bd-mkimage [OPTIONS] --augmented-manifest FILE|s3://B/K -o INDEX\n"
  "       s3bd-mkimage --materialize INDEX -o IMAGE\n"
  "       s3bd-mkimage --dump INDEX [PATH...]\n"
  "build options:\n"
  "  -o, --output INDEX        where to write the index (atomically)\n"
  "  --upload s3://B/K         also upload the index there\n"
  "  --attribute-names A,B     augmented manifest attributes holding S3 URIs\n"
  "                            (default: every attribute ending in -ref)\n"
  "  --listing FILE            build from a saved listing (lines of\n"
  "                            'SIZE<TAB>ETAG<TAB>MTIME<TAB>KEY', as printed\n"
  "                            by s3bd-s3 ls) instead of listing S3\n"
  "  --shard I/N               keep objects I, I+N, I+2N... (ShardedByS3Key)\n"
  "  --uid N, --gid N          owner of every file (default 0)\n"
  "  --file-mode MODE          default 0444\n"
  "  --dir-mode MODE           default 0555\n"
  "  --label NAME              file system label (16 bytes at most)\n"
  "  --report FILE             write left-out keys and reasons (TSV)\n"
  "  --parallel N              listings in flight (default 16)\n"
  "  -q, --quiet               no progress or summary\n"
  "  -h, --help\n"
  "SOURCE_DATE_EPOCH sets the image's own times (default: the newest\n"
  "object's Last-Modified), so the same listing gives the same bytes.\n"
  "\n";

enum {
  OPT_MANIFEST = 256, OPT_AUGMENTED, OPT_ATTRS, OPT_LISTING, OPT_UPLOAD,
  OPT_SHARD, OPT_UID, OPT_GID, OPT_FMODE, OPT_DMODE, OPT_LABEL,
  OPT_REPORT, OPT_PARALLEL, OPT_MATERIALIZE, OPT_DUMP,
};

static const struct option own_opts[] = {
  { "output", required_argument, NULL, 'o' },
  { "manifest", required_argument, NULL, OPT_MANIFEST },
  { "augmented-manifest", required_argument, NULL, OPT_AUGMENTED },
  { "attribute-names", required_argument, NULL, OPT_ATTRS },
  { "listing", required_argument, NULL, OPT_LISTING },
  { "upload", required_argument, NULL, OPT_UPLOAD },
  { "shard", required_argument, NULL, OPT_SHARD },
  { "uid", required_argument, NULL, OPT_UID },
  { "gid", required_argument, NULL, OPT_GID },
  { "file-mode", required_argument, NULL, OPT_FMODE },
  { "dir-mode", required_argument, NULL, OPT_DMODE },
  { "label", required_argument, NULL, OPT_LABEL },
  { "report", required_argument, NULL, OPT_REPORT },
  { "parallel", required_argument, NULL, OPT_PARALLEL },
  { "materialize", required_argument, NULL, OPT_MATERIALIZE },
  { "dump", required_argument, NULL, OPT_DUMP },
  { "quiet", no_argument, NULL, 'q' },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

struct opts {
  const char *output, *manifest, *augmented, *attrs, *listing, *upload;
  const char *report, *label, *materialize, *dump;
  unsigned shard_i, shard_n, parallel;
  uint32_t uid, gid;
  uint16_t file_mode, dir_mode;
  bool quiet;
};

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static bool
show_progress (const struct opts *o)
{
  return !o->quiet && isatty (2);
}

static void
list_progress (void *arg, uint64_t objects, uint64_t requests)
{
  double *start = arg;

  fprintf (stderr, "\rlisting: %" PRIu64 " objects, %" PRIu64
           " requests, %.0f objects/s", objects, requests,
           (double) objects / (now_s () - *start + 1e-9));
}

static void
progress_phase (const struct opts *o, const char *what)
{
  if (show_progress (o))
    fprintf (stderr, "\r\033[K%s", what);
}

static unsigned long
parse_ulong (const char *opt, const char *s, int base, unsigned long max)
{
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul (s, &end, base);
  if (errno || end == s || *end || *s == '-' || v > max)
    {
      fprintf (stderr, "s3bd-mkimage: %s: bad value '%s'\n", opt, s);
      exit (2);
    }
  return v;
}

/* ---- Reading sources ---- */

/* Reads a local file, or an S3 object when path is an s3:// URI. */
static char *
read_source (struct s3_client *c, const char *path, size_t *len,
             struct s3bd_error *err)
{
  char *buf = NULL;

  if (strncmp (path, "s3://", 5) == 0)
    return s3_read_object (c, path, &buf, len, err) == 0 ? buf : NULL;
  else
    {
      FILE *f = fopen (path, "rb");
      struct stat st;

      if (f == NULL || fstat (fileno (f), &st) == -1)
        {
          s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
          if (f)
            fclose (f);
          return NULL;
        }
      buf = malloc ((size_t) st.st_size + 1);
      if (buf == NULL
          || fread (buf, 1, (size_t) st.st_size, f) != (size_t) st.st_size)
        {
          s3bd_fail (err, S3BD_EIO, "%s: cannot read", path);
          free (buf);
          fclose (f);
          return NULL;
        }
      fclose (f);
      buf[st.st_size] = '\0';
      *len = (size_t) st.st_size;
      return buf;
    }
}

/* A saved listing: "SIZE\tETAG\tMTIME\tKEY" lines. */
static int
read_listing_file (const char *path, const char *prefix,
                   struct s3_listing *l, struct s3bd_error *err)
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
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: expected "
                           "SIZE<TAB>ETAG<TAB>MTIME<TAB>KEY", path, lineno);
          break;
        }
      *t1 = *t2 = *t3 = '\0';
      errno = 0;
      size = strtoull (line, &end, 10);
      if (errno || *end || end == line)
        {
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: bad size",
                           path, lineno);
          break;
        }
      mtime = strtoll (t2 + 1, &end, 10);
      if (errno || *end || end == t2 + 1)
        {
          ret = s3bd_fail (err, S3BD_EINVAL, "%s line %lu: bad mtime",
                           path, lineno);
          break;
        }
      if (strncmp (t3 + 1, prefix, strlen (prefix)) != 0)
        continue;   /* outside the prefix: not part of this source */
      if (s3_listing_add (l, t3 + 1, strlen (t3 + 1), t1 + 1, size, mtime,
                          0) == -1)
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

/* ---- Building ---- */

/* UUID and hash seed from the source, so the same source gives the same
 * image: SHA-256 over the buckets, prefix and shard.
 */
static void
derive_identity (const struct dataset *ds, const char *source,
                 unsigned si, unsigned sn, struct ext4_params *p)
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
  q = buf + snprintf (buf, len, "s3bd-image-v1 %u/%u %s", si, sn, source)
      + 1;
  for (size_t i = 0; i < ds->nbuckets; i++)
    {
      size_t n = strlen (ds->buckets[i]) + 1;

      memcpy (q, ds->buckets[i], n);
      q += n;
    }
  SHA256 ((const unsigned char *) buf, (size_t) (q - buf), md);
  free (buf);
  memcpy (p->uuid, md, 16);
  p->uuid[6] = (unsigned char) ((p->uuid[6] & 0x0f) | 0x40);  /* v4 */
  p->uuid[8] = (unsigned char) ((p->uuid[8] & 0x3f) | 0x80);
  memcpy (p->hash_seed, md + 16, 16);
}

static int64_t
image_time (const struct dataset *ds)
{
  const char *sde = getenv ("SOURCE_DATE_EPOCH");
  int64_t t = 0;

  if (sde && *sde)
    {
      char *end;
      long long v = strtoll (sde, &end, 10);

      if (*end == '\0' && v >= 0)
        return v;
    }
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
  struct index_meta_run *r = malloc ((img->nmeta ? img->nmeta : 1)
                                     * sizeof *r);
  size_t n = 0;

  if (r == NULL)
    return -1;
  for (size_t i = 0; i < img->nmeta; i++)
    {
      const struct ext4_meta_block *m = &img->meta[i];

      if (n > 0)
        {
          struct index_meta_run *last = &r[n - 1];

          if (m->block == last->block + last->count
              && last->count < UINT32_MAX)
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
      r[n++] = (struct index_meta_run) { m->block, 1, m->content, false };
    }
  *runs = r;
  *nruns = n;
  return 0;
}

static int
write_report (const char *path, const struct dataset *ds,
              struct s3bd_error *err)
{
  char *tmp;
  size_t len = strlen (path) + 16;
  FILE *f;
  int fd;

  tmp = malloc (len);
  if (tmp == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  snprintf (tmp, len, "%s.tmp.XXXXXX", path);
  if ((fd = mkstemp (tmp)) == -1 || (f = fdopen (fd, "w")) == NULL)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
      if (fd != -1)
        {
          close (fd);
          unlink (tmp);
        }
      free (tmp);
      return -1;
    }
  fprintf (f, "# bucket\tkey\treason\n");
  for (size_t i = 0; i < ds->nleft; i++)
    fprintf (f, "%s\t%s\t%s\n", ds->buckets[ds->left[i].bucket],
             ds->left[i].key, ds_reason_text (ds->left[i].reason));
  if (fflush (f) != 0 || ferror (f) || fclose (f) != 0
      || rename (tmp, path) == -1)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", path, strerror (errno));
      unlink (tmp);
      free (tmp);
      return -1;
    }
  chmod (path, 0644);
  free (tmp);
  return 0;
}

static int
build (const struct opts *o, const struct s3_config *cfg, const char *uri)
{
  struct s3bd_error err = { 0 };
  struct s3_client *c = NULL;
  struct dataset ds = { 0 };
  struct manifest m = { 0 };
  struct s3_listing l = { 0 }, *mls = NULL;
  size_t nmls = 0;
  struct s3_object *found = NULL;
  struct ext4_file *files = NULL;
  struct ext4_image img = { 0 };
  struct ext4_params p = { .uid = o->uid, .gid = o->gid,
                           .file_mode = o->file_mode,
                           .dir_mode = o->dir_mode };
  struct s3bd_index idx = { 0 };
  struct index_object *objs = NULL;
  struct index_leftout *left = NULL;
  char *bucket = NULL, *prefix = NULL, *text = NULL;
  const char *source;
  void *enc = NULL;
  size_t enc_len = 0, len;
  uint64_t bytes = 0;
  double start = now_s ();
  int ret = 1;

  source = o->manifest ? o->manifest : o->augmented ? o->augmented : uri;
  if (!o->listing || o->manifest || o->augmented)
    if (s3_client_new (cfg, &c, &err) == -1)
      goto fail;

  if (o->manifest || o->augmented)
    {
      char *attrs_buf = NULL;
      const char *attrs[64];
      size_t nattrs = 0;

      progress_phase (o, "reading the manifest");
      text = read_source (c, source, &len, &err);
      if (text == NULL)
        goto fail;
      if (o->augmented && o->attrs)
        {
          char *t;

          if ((attrs_buf = strdup (o->attrs)) == NULL)
            {
              s3bd_fail (&err, S3BD_ENOMEM, "out of memory");
              goto fail;
            }
          for (t = attrs_buf; t && nattrs < 64; )
            {
              char *comma = strchr (t, ',');

              if (comma)
                *comma = '\0';
              if (*t)
                attrs[nattrs++] = t;
              t = comma ? comma + 1 : NULL;
            }
        }
      if ((o->manifest ? manifest_parse (text, len, &m, &err)
           : augmented_manifest_parse (text, len, attrs, nattrs, &m, &err))
          == -1)
        {
          free (attrs_buf);
          s3bd_error_prefix (&err, "%s", source);
          goto fail;
        }
      free (attrs_buf);
      progress_phase (o, "looking up the manifest's objects");
      if (resolve_manifest (c, &m, o->parallel, &mls, &nmls, &found, &err)
          == -1
          || dataset_from_manifest (&ds, &m, found, &err) == -1)
        goto fail;
    }
  else
    {
      struct s3_list_opts lo = { .parallel = o->parallel };

      if (s3_parse_uri (uri, &bucket, &prefix, &err) == -1)
        goto fail;
      if (show_progress (o))
        {
          lo.progress = list_progress;
          lo.progress_arg = &start;
        }
      if (o->listing ? read_listing_file (o->listing, prefix, &l, &err)
          : s3_list (c, bucket, prefix, &lo, &l, &err))
        goto fail;
      if (dataset_from_listing (&ds, bucket, prefix, &l, &err) == -1)
        goto fail;
    }
  if (o->shard_n > 1)
    dataset_shard (&ds, o->shard_i, o->shard_n);
  if (ds.nfiles == 0)
    {
      s3bd_fail (&err, S3BD_EINVAL, "%s: no objects to serve%s", source,
                 ds.nleft ? " (every key was left out: see --report)" : "");
      goto fail;
    }

  progress_phase (o, "building the ext4 image");
  files = calloc (ds.nfiles, sizeof *files);
  objs = calloc (ds.nfiles, sizeof *objs);
  left = calloc (ds.nleft ? ds.nleft : 1, sizeof *left);
  if (files == NULL || objs == NULL || left == NULL)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "out of memory");
      goto fail;
    }
  for (size_t i = 0; i < ds.nfiles; i++)
    files[i] = (struct ext4_file) { ds.files[i].path, ds.files[i].size,
                                    ds.files[i].mtime,
                                    ds.files[i].mtime_nsec, 0 };
  derive_identity (&ds, source, o->shard_i, o->shard_n, &p);
  p.time = image_time (&ds);
  if (o->label)
    memcpy (p.label, o->label, strnlen (o->label, sizeof p.label));
  if (ext4_build (&p, files, ds.nfiles, ds.dirs, ds.ndirs, &img, &err)
      == -1)
    goto fail;

  progress_phase (o, "writing the index");
  for (size_t i = 0; i < ds.nfiles; i++)
    {
      objs[i] = (struct index_object) {
        ds.files[i].key, ds.files[i].etag, ds.files[i].bucket,
        ds.files[i].size, ds.files[i].mtime, ds.files[i].mtime_nsec,
        files[i].first_block };
      bytes += ds.files[i].size;
    }
  for (size_t i = 0; i < ds.nleft; i++)
    left[i] = (struct index_leftout) { ds.left[i].key, ds.left[i].bucket,
                                       ds.left[i].reason };
  idx.block_size = EXT4_BLOCK_SIZE;
  idx.device_blocks = img.blocks_count;
  idx.data_start = img.data_start;
  idx.source_kind = o->manifest ? INDEX_SOURCE_MANIFEST
                    : o->augmented ? INDEX_SOURCE_AUGMENTED_MANIFEST
                    : INDEX_SOURCE_PREFIX;
  idx.prefix = o->manifest || o->augmented ? source : ds.prefix;
  idx.buckets = (const char **) ds.buckets;
  idx.nbuckets = (uint32_t) ds.nbuckets;
  idx.shard_index = o->shard_n > 1 ? o->shard_i : 0;
  idx.shard_count = o->shard_n > 1 ? o->shard_n : 1;
  idx.created = p.time;
  idx.objects = objs;
  idx.nobjects = ds.nfiles;
  idx.content = img.content;
  idx.ncontent = img.ncontent;
  idx.left = left;
  idx.nleft = ds.nleft;
  if (meta_runs (&img, &idx.runs, &idx.nruns) == -1)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "out of memory");
      goto fail;
    }
  if (index_encode (&idx, &enc, &enc_len, &err) == -1)
    goto fail;
  if (o->output && index_write_encoded (enc, enc_len, o->output, &err) == -1)
    goto fail;
  if (o->upload)
    {
      char *ub, *uk;
      char etag[80];

      progress_phase (o, "uploading the index");
      if (s3_parse_uri (o->upload, &ub, &uk, &err) == -1)
        goto fail_unlink;
      if (c == NULL && s3_client_new (cfg, &c, &err) == -1)
        {
          free (ub);
          free (uk);
          goto fail_unlink;
        }
      if (s3_put (c, ub, uk, enc, enc_len, etag, &err) == -1)
        {
          free (ub);
          free (uk);
          goto fail_unlink;
        }
      free (ub);
      free (uk);
    }
  /* The report last: uploads cannot be taken back. */
  if (o->report && write_report (o->report, &ds, &err) == -1)
    goto fail_unlink;
  if (!o->quiet)
    {
      double t = now_s () - start;

      if (show_progress (o))
        fputs ("\r\033[K", stderr);
      fprintf (stderr, "s3bd-mkimage: %zu objects, %" PRIu64 " bytes, %zu "
               "left out, %zu directories; device %" PRIu64 " MiB; index "
               "%zu bytes (%.1f bytes/object); %.2f s\n", ds.nfiles, bytes,
               ds.nleft, (size_t) img.dirs, img.blocks_count / 256,
               enc_len, (double) enc_len / (double) ds.nfiles, t);
    }
  ret = 0;
  goto out;

fail_unlink:
  /* Never leave an index behind a failed build. */
  if (o->output)
    unlink (o->output);
fail:
  if (show_progress (o))
    fputs ("\r\033[K", stderr);
  fprintf (stderr, "s3bd-mkimage: %s\n", err.msg);
out:
  free (enc);
  free (idx.runs);
  free (objs);
  free (left);
  free (files);
  ext4_image_free (&img);
  dataset_free (&ds);
  manifest_free (&m);
  free (found);
  for (size_t i = 0; i < nmls; i++)
    s3_listing_free (&mls[i]);
  free (mls);
  s3_listing_free (&l);
  free (text);
  free (bucket);
  free (prefix);
  s3_client_free (c);
  return ret;
}

int
main (int argc, char **argv)
{
  struct opts o = { .parallel = 16, .shard_n = 1, .file_mode = 0444,
                    .dir_mode = 0555 };
  struct s3_config cfg = { 0 };
  struct option long_opts[64];
  int opt;

  s3opts_merge (own_opts, long_opts, 64);
  while ((opt = getopt_long (argc, argv, "o:qh", long_opts, NULL)) != -1)
    {
      if (opt >= S3OPTS_FIRST && opt <= S3OPTS_LAST)
        {
          s3opts_apply ("s3bd-mkimage", opt, optarg, &cfg);
          continue;
        }
      switch (opt)
        {
        case 'o': o.output = optarg; break;
        case 'q': o.quiet = true; break;
        case OPT_MANIFEST: o.manifest = optarg; break;
        case OPT_AUGMENTED: o.augmented = optarg; break;
        case OPT_ATTRS: o.attrs = optarg; break;
        case OPT_LISTING: o.listing = optarg; break;
        case OPT_UPLOAD: o.upload = optarg; break;
        case OPT_REPORT: o.report = optarg; break;
        case OPT_LABEL:
          if (strlen (optarg) > 16)
            {
              fprintf (stderr, "s3bd-mkimage: --label: at most 16 bytes\n");
              return 2;
            }
          o.label = optarg;
          break;
        case OPT_MATERIALIZE: o.materialize = optarg; break;
        case OPT_DUMP: o.dump = optarg; break;
        case OPT_UID:
          o.uid = (uint32_t) parse_ulong ("--uid", optarg, 10, UINT32_MAX);
          break;
        case OPT_GID:
          o.gid = (uint32_t) parse_ulong ("--gid", optarg, 10, UINT32_MAX);
          break;
        case OPT_FMODE:
          o.file_mode = (uint16_t) parse_ulong ("--file-mode", optarg, 8,
                                                07777);
          break;
        case OPT_DMODE:
          o.dir_mode = (uint16_t) parse_ulong ("--dir-mode", optarg, 8,
                                               07777);
          break;
        case OPT_PARALLEL:
          o.parallel = (unsigned) parse_ulong ("--parallel", optarg, 10,
                                               1024);
          break;
        case OPT_SHARD:
          if (sscanf (optarg, "%u/%u", &o.shard_i, &o.shard_n) != 2
              || o.shard_n == 0 || o.shard_i >= o.shard_n)
            {
              fprintf (stderr, "s3bd-mkimage: --shard wants I/N with "
                       "0 <= I < N, got '%s'\n", optarg);
              return 2;
            }
          break;
        case 'h':
          fputs (usage, stdout);
          fputs (s3opts_help, stdout);
          return 0;
        default:
          fputs (usage, stderr);
          return 2;
        }
    }
  if (o.materialize)
    {
      if (optind != argc || o.output == NULL)
        {
          fprintf (stderr, "s3bd-mkimage: --materialize INDEX -o IMAGE\n");
          return 2;
        }
      return materialize (o.materialize, o.output);
    }
  if (o.dump)
    return dump (o.dump, (const char *const *) argv + optind,
                 (size_t) (argc - optind));
  if ((o.manifest || o.augmented) ? optind != argc : optind + 1 != argc)
    {
      fputs (usage, stderr);
      return 2;
    }
  if (o.manifest && o.augmented)
    {
      fprintf (stderr, "s3bd-mkimage: --manifest and --augmented-manifest "
               "exclude each other\n");
      return 2;
    }
  if (o.output == NULL && o.upload == NULL)
    {
      fprintf (stderr, "s3bd-mkimage: say where the index goes: -o INDEX "
                       "and/or --upload s3://BUCKET/KEY\n");
      return 2;
    }
  return build (&o, &cfg, o.manifest || o.augmented ? NULL : argv[optind]);
}
