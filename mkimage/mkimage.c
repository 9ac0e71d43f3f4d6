/* s3bd-mkimage: builds the index of an S3 prefix or manifest — an ext4
 * image of the dataset's objects, metadata only — and inspects indexes.
 * See docs/mkimage.md.
 *
 * The build itself is build_index (lib/build.c, shared with the plugin's
 * source=): list (or read the manifest and look its objects up), apply
 * the key-to-path rules, keep this host's shard, lay out the ext4
 * metadata and encode the index.  This file parses the command line,
 * shows progress, and writes the index atomically, optionally uploads
 * it, and writes the report of left-out keys.  Nothing is written unless
 * all of it succeeds.
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

#include "mkimage.h"
#include "s3bd/build.h"
#include "s3bd/dataset.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"
#include "s3bd/version.h"
#include "s3opts.h"

static const char usage[]
    = "usage: s3bd-mkimage [OPTIONS] s3://BUCKET/PREFIX -o INDEX\n"
      "       s3bd-mkimage [OPTIONS] --manifest FILE|s3://B/K -o INDEX\n"
      "       s3bd-mkimage [OPTIONS] --augmented-manifest FILE|s3://B/K -o "
      "INDEX\n"
      "       s3bd-mkimage --materialize INDEX -o IMAGE\n"
      "       s3bd-mkimage --dump INDEX [PATH...]\n"
      "       s3bd-mkimage --dump-records INDEX\n"
      "Builds the index of a dataset (the objects under a prefix, or those a\n"
      "manifest names) that nbdkit-s3bd-plugin serves as an ext4 device.\n"
      "sources (one of):\n"
      "  s3://BUCKET/PREFIX        every object under the prefix; a key's "
      "path is\n"
      "                            what follows the prefix's last '/'\n"
      "  --manifest SRC            a SageMaker manifest file (local or "
      "s3://B/K):\n"
      "                            [{\"prefix\": \"s3://b/p/\"}, \"rel/a\", "
      "...]; the\n"
      "                            paths are its entries\n"
      "  --augmented-manifest SRC  a SageMaker augmented manifest (JSON "
      "Lines)\n"
      "  --attribute-names A,B     its attributes, in order (SageMaker's\n"
      "                            AttributeNames): those ending in -ref hold\n"
      "                            s3:// URIs (files), the others are values\n"
      "                            Pipe mode sends inline\n"
      "                            (default: every attribute ending in -ref)\n"
      "  --listing FILE            a saved listing (lines of\n"
      "                            'SIZE<TAB>ETAG<TAB>MTIME<TAB>KEY', as "
      "printed\n"
      "                            by s3bd-s3 ls) instead of listing S3\n"
      "build options:\n"
      "  -o, --output INDEX        where to write the index (atomically)\n"
      "  --upload s3://B/K         also upload the index there\n"
      "  --shard I/N               keep objects I, I+N, I+2N... "
      "(ShardedByS3Key)\n"
      "  --uid N, --gid N          owner of every file (default 0)\n"
      "  --file-mode MODE          default 0444\n"
      "  --dir-mode MODE           default 0555\n"
      "  --label NAME              file system label (16 bytes at most)\n"
      "  --report FILE             write left-out keys and reasons (TSV)\n"
      "  --parallel N              listings in flight (default 16)\n"
      "  -q, --quiet               no progress or summary\n"
      "inspecting an index (no S3 access):\n"
      "  --materialize INDEX -o IMAGE  write a sparse file of the device's "
      "size:\n"
      "                            the metadata in place, zeros for data, for\n"
      "                            e2fsck -fn, debugfs or mount -o ro,loop\n"
      "  --dump INDEX [PATH...]    print each file (or those named): path,\n"
      "                            s3://bucket/key, ETag, size, first block,\n"
      "                            blocks; checks each inode against its "
      "object\n"
      "  --dump-records INDEX      print the Pipe records of an augmented\n"
      "                            manifest: line, record, then \"object\"\n"
      "                            s3://bucket/key size or \"inline\" JSON\n"
      "  -h, --help\n"
      "  -V, --version\n"
      "\n";

/* Printed after the S3 options. */
static const char env_help[]
    = "environment:\n"
      "  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL  the S3 endpoint of a non-AWS\n"
      "                            server (http://127.0.0.1:9000, ...), the\n"
      "                            first set wins; --endpoint overrides both\n"
      "  AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE, AWS_CONFIG_FILE,\n"
      "  AWS_SHARED_CREDENTIALS_FILE, AWS_ACCESS_KEY_ID, "
      "AWS_SECRET_ACCESS_KEY,\n"
      "  AWS_SESSION_TOKEN, AWS_CA_BUNDLE, AWS_WEB_IDENTITY_TOKEN_FILE,\n"
      "  AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_*, "
      "AWS_EC2_METADATA_DISABLED\n"
      "                            the AWS chain (docs/s3-client.md)\n"
      "  SOURCE_DATE_EPOCH         the image's own times (default: the "
      "newest\n"
      "                            object's Last-Modified), so the same "
      "listing\n"
      "                            gives the same bytes\n"
      "see s3bd-mkimage(1)\n";

enum
{
  OPT_MANIFEST = 256,
  OPT_AUGMENTED,
  OPT_ATTRS,
  OPT_LISTING,
  OPT_UPLOAD,
  OPT_SHARD,
  OPT_UID,
  OPT_GID,
  OPT_FMODE,
  OPT_DMODE,
  OPT_LABEL,
  OPT_REPORT,
  OPT_PARALLEL,
  OPT_MATERIALIZE,
  OPT_DUMP,
  OPT_DUMP_RECORDS,
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
  { "dump-records", required_argument, NULL, OPT_DUMP_RECORDS },
  { "quiet", no_argument, NULL, 'q' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

struct opts
{
  const char *output, *manifest, *augmented, *attrs, *listing, *upload;
  const char *report, *materialize, *dump, *dump_records;
  unsigned parallel;
  /* --uid, --gid, --file-mode, --dir-mode, --label, --shard: set with
   * build_opts_set, as the plugin's keys of the same names.
   */
  struct build_opts image;
  bool quiet;
};

static bool
show_progress (const struct opts *o)
{
  return !o->quiet && isatty (2);
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

/* An option that shapes the image (own_opts gives its name); -1 after
 * saying what is wrong with the value.
 */
static int
set_image_opt (struct build_opts *image, int opt, const char *value)
{
  struct s3bd_error err = { 0 };
  const struct option *l = own_opts;

  while (l->val != opt)
    l++;
  if (build_opts_set (image, l->name, value, &err) == 0)
    return 0;
  fprintf (stderr, "s3bd-mkimage: --%s %s: %s\n", l->name, value, err.msg);
  return -1;
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

/* Progress on a terminal: the phase, and the listing's count and rate. */
struct progress
{
  const struct opts *o;
  double start;
};

static void
build_phase (void *arg, const char *what)
{
  struct progress *pr = arg;

  progress_phase (pr->o, what);
}

static void
list_progress (void *arg, uint64_t objects, uint64_t requests)
{
  struct progress *pr = arg;

  fprintf (stderr,
           "\rlisting: %" PRIu64 " objects, %" PRIu64
           " requests, %.0f objects/s",
           objects, requests,
           (double)objects / (s3_now_ms () / 1000.0 - pr->start + 1e-9));
}

static int
build (const struct opts *o, const struct s3_config *cfg, const char *uri)
{
  struct s3bd_error err = { 0 };
  struct s3_client *c = NULL;
  struct build_opts bo;
  struct build_result res = { 0 };
  struct progress pr = { o, s3_now_ms () / 1000.0 };
  int ret = 1;

  bo = o->image;
  bo.prefix_uri = uri;
  bo.manifest = o->manifest;
  bo.augmented = o->augmented;
  bo.attrs = o->attrs;
  bo.listing = uri ? o->listing : NULL; /* a manifest is looked up */
  bo.time = build_source_date_epoch ();
  bo.parallel = o->parallel;
  if (show_progress (o))
    {
      bo.phase = build_phase;
      bo.list_progress = list_progress;
      bo.progress_arg = &pr;
    }

  if (bo.listing == NULL && s3_client_new (cfg, &c, &err) == -1)
    goto fail;
  if (build_index (c, &bo, &res, &err) == -1)
    goto fail;
  progress_phase (o, "writing the index");
  if (o->output
      && index_write_encoded (res.index, res.index_len, o->output, &err) == -1)
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
      if (s3_put (c, ub, uk, res.index, res.index_len, etag, &err) == -1)
        {
          free (ub);
          free (uk);
          goto fail_unlink;
        }
      free (ub);
      free (uk);
    }
  /* The report last: uploads cannot be taken back. */
  if (o->report && write_report (o->report, &res.ds, &err) == -1)
    goto fail_unlink;
  if (!o->quiet)
    {
      double t = s3_now_ms () / 1000.0 - pr.start;

      if (show_progress (o))
        fputs ("\r\033[K", stderr);
      fprintf (stderr,
               "s3bd-mkimage: %zu objects, %" PRIu64 " bytes, %zu "
               "left out, %zu directories; device %" PRIu64 " MiB; index "
               "%zu bytes (%.1f bytes/object); %.2f s\n",
               res.ds.nfiles, res.bytes, res.ds.nleft, (size_t)res.dirs,
               res.device_blocks / 256, res.index_len,
               (double)res.index_len / (double)res.ds.nfiles, t);
      if (res.records)
        fprintf (stderr, "s3bd-mkimage: %" PRIu64 " Pipe records\n",
                 res.records);
    }
  /* Even with -q: a training job would miss these lines' records. */
  if (res.lines_dropped)
    fprintf (stderr,
             "s3bd-mkimage: warning: %zu augmented manifest lines left out "
             "of the Pipe records: an object of theirs is not in the image "
             "(left out, or in another shard)\n",
             res.lines_dropped);
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
  build_result_free (&res);
  s3_client_free (c);
  return ret;
}

int
main (int argc, char **argv)
{
  struct opts o = { .parallel = 16 };
  struct s3_config cfg = { 0 };
  struct option long_opts[64];
  int opt;

  build_opts_init (&o.image);
  s3opts_merge (own_opts, long_opts, 64);
  while ((opt = getopt_long (argc, argv, "o:qhV", long_opts, NULL)) != -1)
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
        case OPT_MATERIALIZE: o.materialize = optarg; break;
        case OPT_DUMP: o.dump = optarg; break;
        case OPT_DUMP_RECORDS: o.dump_records = optarg; break;
        case OPT_UID:
        case OPT_GID:
        case OPT_FMODE:
        case OPT_DMODE:
        case OPT_LABEL:
        case OPT_SHARD:
          if (set_image_opt (&o.image, opt, optarg) == -1)
            return 2;
          break;
        case OPT_PARALLEL:
          o.parallel = (unsigned)parse_ulong ("--parallel", optarg, 10, 1024);
          break;
        case 'h':
          fputs (usage, stdout);
          fputs (s3opts_help, stdout);
          fputs (env_help, stdout);
          return 0;
        case 'V': printf ("s3bd-mkimage %s\n", S3BD_VERSION); return 0;
        default: fputs (usage, stderr); return 2;
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
  if (o.dump_records)
    {
      if (optind != argc)
        {
          fprintf (stderr, "s3bd-mkimage: --dump-records INDEX\n");
          return 2;
        }
      return dump_records (o.dump_records);
    }
  if (o.dump)
    return dump (o.dump, (const char *const *)argv + optind,
                 (size_t)(argc - optind));
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
