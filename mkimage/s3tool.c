/* s3bd-s3: a small command over libs3bd's S3 client, for the demo, the
 * tests and benchmarks: list a prefix, read a range, HEAD, PUT, make a
 * bucket, presign a URL.  See docs/s3bd-s3.md.
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

#include "s3bd/s3.h"
#include "s3bd/version.h"
#include "s3opts.h"

static const char usage[]
    = "usage: s3bd-s3 [OPTIONS] COMMAND ARGS\n"
      "commands:\n"
      "  ls s3://BUCKET/PREFIX        list objects: size, etag, mtime, key\n"
      "  get s3://BUCKET/KEY          write the object (or --range) to stdout "
      "or -o\n"
      "  head s3://BUCKET/KEY         print size, etag, mtime\n"
      "  put s3://BUCKET/KEY FILE     upload FILE in one PUT\n"
      "  mb s3://BUCKET               create a bucket\n"
      "  presign s3://BUCKET/KEY      print a presigned GET URL\n"
      "ls options:\n"
      "  --parallel N        walk common prefixes with N listings in flight\n"
      "  --max-keys N        page size\n"
      "  --count             print only the summary\n"
      "get options:\n"
      "  --range OFF:LEN     bytes to read (default: the whole object)\n"
      "  --if-match ETAG     fail if the object's ETag differs\n"
      "  --chunk SIZE        bytes per ranged GET (default 8M)\n"
      "  -o FILE             output file (default stdout)\n"
      "  --discard           read and drop the bytes (benchmarks): chunks go\n"
      "                      through a ring of --connections buffers, as in a\n"
      "                      cache, allocated before the clock starts\n"
      "presign options:\n"
      "  --expires SECONDS   default 3600\n"
      "  -v, --verbose       timings and retries on stderr\n"
      "  -h, --help          this help\n"
      "  -V, --version       print the version\n"
      "\n";

enum
{
  OPT_PARALLEL = 256,
  OPT_MAXKEYS,
  OPT_COUNT,
  OPT_RANGE,
  OPT_IFMATCH,
  OPT_CHUNK,
  OPT_DISCARD,
  OPT_EXPIRES,
};

static const struct option own_opts[] = {
  { "parallel", required_argument, NULL, OPT_PARALLEL },
  { "max-keys", required_argument, NULL, OPT_MAXKEYS },
  { "count", no_argument, NULL, OPT_COUNT },
  { "range", required_argument, NULL, OPT_RANGE },
  { "if-match", required_argument, NULL, OPT_IFMATCH },
  { "chunk", required_argument, NULL, OPT_CHUNK },
  { "discard", no_argument, NULL, OPT_DISCARD },
  { "expires", required_argument, NULL, OPT_EXPIRES },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

static struct
{
  unsigned parallel, max_keys, expires;
  bool count, discard, verbose, have_range;
  uint64_t off, len;
  const char *if_match, *output;
  size_t chunk;
} o = { .expires = 3600 };

static int
write_all (int fd, const char *p, size_t n)
{
  while (n)
    {
      ssize_t w = write (fd, p, n);

      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          return -1;
        }
      p += w;
      n -= (size_t)w;
    }
  return 0;
}

static void
progress (void *arg, uint64_t objects, uint64_t requests)
{
  double *start = arg;

  if (o.verbose && isatty (2))
    fprintf (stderr,
             "\rlisted %" PRIu64 " objects, %" PRIu64
             " requests, %.0f objects/s",
             objects, requests,
             (double)objects / (s3_now_ms () / 1000.0 - *start + 1e-9));
}

static int
cmd_ls (struct s3_client *c, const char *bucket, const char *prefix)
{
  struct s3_listing l = { 0 };
  struct s3bd_error err = { 0 };
  double start = s3_now_ms () / 1000.0, t;
  struct s3_list_opts lo = { .parallel = o.parallel,
                             .max_keys = o.max_keys,
                             .progress = progress,
                             .progress_arg = &start };
  uint64_t bytes = 0;

  if (s3_list (c, bucket, prefix, &lo, &l, &err) == -1)
    {
      if (o.verbose && isatty (2))
        fputc ('\n', stderr);
      fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      return 1;
    }
  t = s3_now_ms () / 1000.0 - start;
  if (o.verbose && isatty (2))
    fputc ('\n', stderr);
  for (size_t i = 0; i < l.n; i++)
    {
      bytes += l.objs[i].size;
      if (!o.count)
        printf ("%" PRIu64 "\t%s\t%" PRId64 "\t%s\n", l.objs[i].size,
                l.objs[i].etag, l.objs[i].mtime, l.objs[i].key);
    }
  if (o.count || o.verbose)
    fprintf (o.count ? stdout : stderr,
             "%zu objects, %" PRIu64 " bytes, %.3f s, %.0f keys/s\n", l.n,
             bytes, t, (double)l.n / (t > 0 ? t : 1e-9));
  s3_listing_free (&l);
  return 0;
}

/* --discard: keep `connections` chunk GETs in flight, each into a buffer
 * of a fixed ring that is reused as soon as its GET completes, the way the
 * plugin's cache reuses its slots.  Measures the engine, not malloc.
 */
struct ring_slot
{
  struct s3_request req;
  void *buf;
  int *failed;
  struct ring_slot **free_list;
  struct ring_slot *next;
};

static void
ring_done (struct s3_request *r, void *arg)
{
  struct ring_slot *s = arg;

  if (r->rc && !*s->failed)
    {
      fprintf (stderr, "s3bd-s3: %s\n", r->err.msg);
      *s->failed = 1;
    }
  s->next = *s->free_list;
  *s->free_list = s;
}

static int
get_discard (struct s3_client *c, const char *bucket, const char *key,
             uint64_t off, uint64_t len, unsigned slots)
{
  size_t chunk = o.chunk ? o.chunk : 8 << 20;
  struct ring_slot *ring = calloc (slots, sizeof *ring), *free_list = NULL;
  struct s3_engine *e = s3_client_engine (c);
  uint64_t pos = 0;
  unsigned busy = 0;
  int failed = 0;
  double start, t;

  if (ring == NULL || e == NULL)
    {
      fprintf (stderr, "s3bd-s3: out of memory\n");
      free (ring);
      return 1;
    }
  if (chunk > len)
    chunk = (size_t)len;
  for (unsigned i = 0; i < slots; i++)
    {
      if ((ring[i].buf = malloc (chunk)) == NULL)
        {
          fprintf (stderr, "s3bd-s3: out of memory\n");
          failed = 1;
          break;
        }
      /* Fault the pages in now (not 0: malloc+memset 0 becomes calloc,
       * which touches nothing). */
      memset (ring[i].buf, 0xff, chunk);
      ring[i].failed = &failed;
      ring[i].free_list = &free_list;
      ring[i].next = free_list;
      free_list = &ring[i];
    }
  start = s3_now_ms () / 1000.0;
  while (!failed && (pos < len || busy))
    {
      while (!failed && pos < len && free_list)
        {
          struct ring_slot *s = free_list;
          uint64_t l = len - pos < chunk ? len - pos : chunk;

          free_list = s->next;
          s3_request_get_range (&s->req, bucket, key, off + pos, l, o.if_match,
                                s->buf);
          s->req.done = ring_done;
          s->req.arg = s;
          s3_engine_submit (e, &s->req);
          pos += l;
          busy++;
        }
      s3_engine_run (e, 100);
      busy = slots;
      for (struct ring_slot *s = free_list; s; s = s->next)
        busy--;
    }
  while (s3_engine_run (e, 1000) > 0)
    ;
  t = s3_now_ms () / 1000.0 - start;
  if (!failed && o.verbose)
    fprintf (stderr, "%" PRIu64 " bytes in %.3f s: %.1f MB/s\n", len, t,
             (double)len / 1e6 / (t > 0 ? t : 1e-9));
  for (unsigned i = 0; i < slots; i++)
    free (ring[i].buf);
  free (ring);
  return failed;
}

static int
cmd_get (struct s3_client *c, const char *bucket, const char *key,
         unsigned connections)
{
  struct s3bd_error err = { 0 };
  uint64_t off = 0, len;
  char *buf;
  double start, t;
  int fd = 1, ret = 1;

  if (o.have_range)
    {
      off = o.off;
      len = o.len;
    }
  else
    {
      struct s3_object_info info;

      if (s3_head (c, bucket, key, &info, &err) == -1)
        {
          fprintf (stderr, "s3bd-s3: %s\n", err.msg);
          return 1;
        }
      len = info.size;
    }
  if (o.discard)
    return len ? get_discard (c, bucket, key, off, len, connections) : 0;
  if (len > SIZE_MAX || (buf = malloc (len ? (size_t)len : 1)) == NULL)
    {
      fprintf (stderr, "s3bd-s3: cannot allocate %" PRIu64 " bytes\n", len);
      return 1;
    }
  start = s3_now_ms () / 1000.0;
  if (s3_get (c, bucket, key, off, len, o.if_match, buf, o.chunk, &err) == -1)
    {
      fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      goto out;
    }
  t = s3_now_ms () / 1000.0 - start;
  if (o.verbose)
    fprintf (stderr, "%" PRIu64 " bytes in %.3f s: %.1f MB/s\n", len, t,
             (double)len / 1e6 / (t > 0 ? t : 1e-9));
  if (o.output
      && (fd = open (o.output, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
    {
      fprintf (stderr, "s3bd-s3: %s: %s\n", o.output, strerror (errno));
      goto out;
    }
  if (write_all (fd, buf, (size_t)len) == -1 || (fd != 1 && close (fd) == -1))
    {
      fprintf (stderr, "s3bd-s3: %s: %s\n", o.output ? o.output : "stdout",
               strerror (errno));
      goto out;
    }
  ret = 0;

out:
  free (buf);
  return ret;
}

static int
cmd_put (struct s3_client *c, const char *bucket, const char *key,
         const char *file)
{
  struct s3bd_error err = { 0 };
  struct stat st;
  char etag[80];
  char *buf = NULL;
  size_t got = 0;
  int fd, ret = 1;

  if ((fd = open (file, O_RDONLY)) < 0 || fstat (fd, &st) == -1)
    {
      fprintf (stderr, "s3bd-s3: %s: %s\n", file, strerror (errno));
      if (fd >= 0)
        close (fd);
      return 1;
    }
  if ((buf = malloc (st.st_size ? (size_t)st.st_size : 1)) == NULL)
    {
      fprintf (stderr, "s3bd-s3: %s: out of memory\n", file);
      goto out;
    }
  while (got < (size_t)st.st_size)
    {
      ssize_t r = read (fd, buf + got, (size_t)st.st_size - got);

      if (r <= 0)
        {
          fprintf (stderr, "s3bd-s3: %s: %s\n", file,
                   r < 0 ? strerror (errno) : "file shrank while reading");
          goto out;
        }
      got += (size_t)r;
    }
  if (s3_put (c, bucket, key, buf, got, etag, &err) == -1)
    {
      fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      goto out;
    }
  printf ("%s\n", etag);
  ret = 0;

out:
  free (buf);
  close (fd);
  return ret;
}

/* -v: the engine's line per retry. */
static void
log_stderr (enum s3bd_log_level level, const char *msg)
{
  (void)level;
  fprintf (stderr, "%s\n", msg);
}

int
main (int argc, char **argv)
{
  struct s3_config cfg = { 0 };
  struct s3_client *c = NULL;
  struct s3bd_error err = { 0 };
  char *bucket = NULL, *key = NULL;
  const char *cmd;
  int opt, ret = 1;

  struct option long_opts[64];

  s3opts_merge (own_opts, long_opts, 64);
  while ((opt = getopt_long (argc, argv, "o:vhV", long_opts, NULL)) != -1)
    {
      if (opt >= S3OPTS_FIRST && opt <= S3OPTS_LAST)
        {
          s3opts_apply ("s3bd-s3", opt, optarg, &cfg);
          continue;
        }
      switch (opt)
        {
        case OPT_PARALLEL:
          o.parallel
              = opt_count ("s3bd-s3", "--parallel", optarg, 0, 1000000000);
          break;
        case OPT_MAXKEYS:
          o.max_keys
              = opt_count ("s3bd-s3", "--max-keys", optarg, 0, 1000000000);
          break;
        case OPT_COUNT: o.count = true; break;
        case OPT_RANGE:
          {
            char *colon = strchr (optarg, ':');

            if (colon == NULL)
              goto bad_range;
            *colon = '\0';
            if (parse_size (optarg, &o.off) == -1
                || parse_size (colon + 1, &o.len) == -1 || o.len == 0)
              goto bad_range;
            o.have_range = true;
            break;
          bad_range:
            fprintf (stderr, "s3bd-s3: --range wants OFFSET:LENGTH with "
                             "LENGTH > 0\n");
            return 2;
          }
        case OPT_IFMATCH: o.if_match = optarg; break;
        case OPT_CHUNK:
          {
            uint64_t v;

            if (parse_size (optarg, &v) == -1 || v == 0 || v > (1u << 30))
              {
                fprintf (stderr, "s3bd-s3: --chunk: 1 to 1G\n");
                return 2;
              }
            o.chunk = (size_t)v;
            break;
          }
        case OPT_DISCARD: o.discard = true; break;
        case OPT_EXPIRES:
          o.expires = opt_count ("s3bd-s3", "--expires", optarg, 0, 1000000000);
          break;
        case 'o': o.output = optarg; break;
        case 'v': o.verbose = true; break;
        case 'h':
          fputs (usage, stdout);
          fputs (s3opts_help, stdout);
          return 0;
        case 'V': printf ("s3bd-s3 %s\n", S3BD_VERSION); return 0;
        default: fputs (usage, stderr); return 2;
        }
    }
  if (optind + 2 > argc)
    {
      fputs (usage, stderr);
      return 2;
    }
  cmd = argv[optind];
  if (s3_parse_uri (argv[optind + 1], &bucket, &key, &err) == -1)
    {
      fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      return 2;
    }
  if (strcmp (cmd, "put") == 0 ? optind + 3 != argc : optind + 2 != argc)
    {
      fputs (usage, stderr);
      goto out;
    }
  cfg.log = log_stderr;
  cfg.verbose = o.verbose;
  if (s3_client_new (&cfg, &c, &err) == -1)
    {
      fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      goto out;
    }
  if (strcmp (cmd, "ls") == 0)
    ret = cmd_ls (c, bucket, key);
  else if (strcmp (cmd, "get") == 0)
    ret = cmd_get (c, bucket, key,
                   cfg.max_connections ? cfg.max_connections : 64);
  else if (strcmp (cmd, "head") == 0)
    {
      struct s3_object_info info;

      if (s3_head (c, bucket, key, &info, &err) == -1)
        fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      else
        {
          printf ("%" PRIu64 "\t%s\t%" PRId64 "\n", info.size, info.etag,
                  info.mtime);
          ret = 0;
        }
    }
  else if (strcmp (cmd, "put") == 0)
    ret = cmd_put (c, bucket, key, argv[optind + 2]);
  else if (strcmp (cmd, "mb") == 0)
    {
      if (s3_create_bucket (c, bucket, &err) == -1)
        fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      else
        ret = 0;
    }
  else if (strcmp (cmd, "presign") == 0)
    {
      char *url = s3_presign_get (c, bucket, key, o.expires, &err);

      if (url == NULL)
        fprintf (stderr, "s3bd-s3: %s\n", err.msg);
      else
        {
          printf ("%s\n", url);
          free (url);
          ret = 0;
        }
    }
  else
    {
      fprintf (stderr, "s3bd-s3: unknown command: %s\n", cmd);
      ret = 2;
    }

out:
  s3_client_free (c);
  free (bucket);
  free (key);
  return ret;
}
