/* s3bd-testdata: makes and checks test objects whose bytes are the
 * pattern of pattern.h.
 *
 *   s3bd-testdata gen KEY SIZE              pattern bytes to stdout
 *   s3bd-testdata check KEY OFFSET [FILE]   verify FILE (or stdin) holds
 *                                           the bytes from OFFSET on
 *   s3bd-testdata upload --endpoint URL s3://BUCKET/PREFIX SPEC
 *       SPEC lines are "SIZE RELATIVE-KEY" (the key is the rest of the
 *       line, so it may hold spaces); each object PREFIX+RELATIVE-KEY gets
 *       the pattern of its full key.  Up to 16 PUTs in flight and 2 GiB of
 *       bodies in memory.  Credentials come from the environment.
 *   s3bd-testdata fill IMAGE < DUMP
 *       DUMP is `s3bd-mkimage --dump` output (PATH, s3://B/KEY, ETAG, SIZE,
 *       FIRST-BLOCK, BLOCKS); writes each object's pattern bytes at its
 *       recorded place in the materialised IMAGE.
 *   s3bd-testdata verify DIR < DUMP
 *       checks that DIR/PATH holds exactly SIZE bytes of KEY's pattern for
 *       every line; prints the number of files and bytes checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pattern.h"
#include "s3bd/s3.h"

#define MAX_INFLIGHT 16
#define MAX_BYTES ((uint64_t)2 << 30)

static int
cmd_gen (const char *key, const char *size_s)
{
  uint64_t seed = pattern_seed (key), size, off = 0;
  static unsigned char buf[1 << 20];
  char *end;

  size = strtoull (size_s, &end, 10);
  if (*end || end == size_s)
    {
      fprintf (stderr, "s3bd-testdata: bad size %s\n", size_s);
      return 2;
    }
  while (off < size)
    {
      size_t n = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;

      pattern_fill (seed, off, buf, n);
      if (fwrite (buf, 1, n, stdout) != n)
        {
          perror ("s3bd-testdata: stdout");
          return 1;
        }
      off += n;
    }
  return fflush (stdout) == 0 ? 0 : 1;
}

static int
cmd_check (const char *key, const char *off_s, const char *file)
{
  uint64_t seed = pattern_seed (key), off, bad, total = 0;
  static unsigned char buf[1 << 20];
  FILE *f = stdin;
  char *end;
  size_t n;

  off = strtoull (off_s, &end, 10);
  if (*end || end == off_s)
    {
      fprintf (stderr, "s3bd-testdata: bad offset %s\n", off_s);
      return 2;
    }
  if (file && (f = fopen (file, "rb")) == NULL)
    {
      fprintf (stderr, "s3bd-testdata: %s: %s\n", file, strerror (errno));
      return 1;
    }
  while ((n = fread (buf, 1, sizeof buf, f)) > 0)
    {
      bad = pattern_check (seed, off + total, buf, n);
      if (bad != UINT64_MAX)
        {
          fprintf (stderr,
                   "s3bd-testdata: %s: wrong byte at object offset "
                   "%" PRIu64 "\n",
                   key, bad);
          return 1;
        }
      total += n;
    }
  if (ferror (f))
    {
      fprintf (stderr, "s3bd-testdata: read error\n");
      return 1;
    }
  if (file)
    fclose (f);
  printf ("%" PRIu64 " bytes ok\n", total);
  return 0;
}

struct upload
{
  struct s3_request req;
  char *key;
  void *body;
  uint64_t size;
  int *failed;
  uint64_t *inflight_bytes;
  unsigned *inflight;
};

static void
upload_done (struct s3_request *r, void *arg)
{
  struct upload *u = arg;

  if (r->rc)
    {
      fprintf (stderr, "s3bd-testdata: %s\n", r->err.msg);
      *u->failed = 1;
    }
  *u->inflight_bytes -= u->size;
  (*u->inflight)--;
  s3_request_release (r);
  free (u->body);
  free (u->key);
  free (u);
}

static int
cmd_upload (const char *endpoint, const char *uri, const char *spec)
{
  struct s3_config cfg = { .endpoint = endpoint, .addressing = S3_ADDR_PATH };
  struct s3bd_error err = { 0 };
  struct s3_client *c = NULL;
  struct s3_engine *e;
  char *bucket = NULL, *prefix = NULL, *line = NULL;
  size_t cap = 0;
  ssize_t len;
  uint64_t inflight_bytes = 0, objects = 0, bytes = 0;
  unsigned inflight = 0;
  int failed = 0, lineno = 0;
  FILE *f;
  uint64_t t0;

  if ((f = fopen (spec, "r")) == NULL)
    {
      fprintf (stderr, "s3bd-testdata: %s: %s\n", spec, strerror (errno));
      return 1;
    }
  if (s3_parse_uri (uri, &bucket, &prefix, &err) == -1
      || s3_client_new (&cfg, &c, &err) == -1)
    {
      fprintf (stderr, "s3bd-testdata: %s\n", err.msg);
      failed = 1;
      goto out;
    }
  e = s3_client_engine (c);
  t0 = s3_now_ms ();
  while (!failed && (len = getline (&line, &cap, f)) != -1)
    {
      struct upload *u;
      char *sp;
      size_t klen;

      lineno++;
      if (len && line[len - 1] == '\n')
        line[--len] = '\0';
      if (len == 0)
        continue;
      sp = strchr (line, ' ');
      if (sp == NULL)
        {
          fprintf (stderr, "s3bd-testdata: %s line %d: expected SIZE KEY\n",
                   spec, lineno);
          failed = 1;
          break;
        }
      u = calloc (1, sizeof *u);
      klen = strlen (prefix) + strlen (sp + 1) + 1;
      if (u == NULL || (u->key = malloc (klen)) == NULL)
        {
          fprintf (stderr, "s3bd-testdata: out of memory\n");
          failed = 1;
          free (u);
          break;
        }
      snprintf (u->key, klen, "%s%s", prefix, sp + 1);
      u->size = strtoull (line, NULL, 10);
      /* Wait for room: a bounded number of bodies in memory. */
      while (
          inflight
          && (inflight >= MAX_INFLIGHT || inflight_bytes + u->size > MAX_BYTES))
        s3_engine_run (e, 100);
      if (u->size > SIZE_MAX
          || (u->body = malloc (u->size ? (size_t)u->size : 1)) == NULL)
        {
          fprintf (stderr, "s3bd-testdata: cannot allocate %" PRIu64 " bytes\n",
                   u->size);
          free (u->key);
          free (u);
          failed = 1;
          break;
        }
      pattern_fill (pattern_seed (u->key), 0, u->body, (size_t)u->size);
      u->req = (struct s3_request){
        .method = S3_PUT,
        .bucket = bucket,
        .key = u->key,
        .put_body = u->body,
        .put_len = (size_t)u->size,
        .done = upload_done,
        .arg = u,
      };
      u->failed = &failed;
      u->inflight = &inflight;
      u->inflight_bytes = &inflight_bytes;
      inflight++;
      inflight_bytes += u->size;
      objects++;
      bytes += u->size;
      s3_engine_submit (e, &u->req);
    }
  while (inflight)
    s3_engine_run (e, 1000);
  if (!failed)
    fprintf (stderr,
             "uploaded %" PRIu64 " objects, %" PRIu64 " bytes in %.2f s\n",
             objects, bytes, (double)(s3_now_ms () - t0) / 1000.0);

out:
  fclose (f);
  free (line);
  s3_client_free (c);
  free (bucket);
  free (prefix);
  return failed;
}

/* One line of s3bd-mkimage --dump: tab-separated fields. */
struct dump_line
{
  char *path, *key;
  uint64_t size, first_block;
};

static int
parse_dump_line (char *line, struct dump_line *d)
{
  char *f[6];
  size_t n = 0;

  for (char *p = line; p && n < 6; n++)
    {
      f[n] = p;
      p = strchr (p, '\t');
      if (p)
        *p++ = '\0';
    }
  if (n != 6 || strncmp (f[1], "s3://", 5) != 0
      || strchr (f[1] + 5, '/') == NULL)
    return -1;
  d->path = f[0];
  d->key = strchr (f[1] + 5, '/') + 1;
  d->size = strtoull (f[3], NULL, 10);
  d->first_block = strtoull (f[4], NULL, 10);
  return 0;
}

static int
cmd_fill_or_verify (const char *target, bool fill)
{
  static unsigned char buf[1 << 20], got[1 << 20];
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  uint64_t files = 0, bytes = 0;
  int img = -1, ret = 0;

  if (fill && (img = open (target, O_WRONLY)) < 0)
    {
      fprintf (stderr, "s3bd-testdata: %s: %s\n", target, strerror (errno));
      return 1;
    }
  while (ret == 0 && (len = getline (&line, &cap, stdin)) != -1)
    {
      struct dump_line d;
      uint64_t seed, off = 0;
      int fd = -1;

      if (len && line[len - 1] == '\n')
        line[len - 1] = '\0';
      if (parse_dump_line (line, &d) == -1)
        {
          fprintf (stderr, "s3bd-testdata: not a dump line: %s\n", line);
          ret = 1;
          break;
        }
      seed = pattern_seed (d.key);
      if (!fill)
        {
          char path[8192];
          struct stat st;

          snprintf (path, sizeof path, "%s/%s", target, d.path);
          if ((fd = open (path, O_RDONLY)) < 0 || fstat (fd, &st) == -1
              || (uint64_t)st.st_size != d.size)
            {
              fprintf (stderr, "s3bd-testdata: %s: %s\n", path,
                       fd < 0 ? strerror (errno) : "wrong size");
              ret = 1;
              if (fd >= 0)
                close (fd);
              break;
            }
        }
      while (off < d.size)
        {
          size_t n
              = d.size - off < sizeof buf ? (size_t)(d.size - off) : sizeof buf;

          pattern_fill (seed, off, buf, n);
          if (fill ? pwrite (img, buf, n, (off_t)(d.first_block * 4096 + off))
                         != (ssize_t)n
                   : pread (fd, got, n, (off_t)off) != (ssize_t)n
                         || memcmp (buf, got, n) != 0)
            {
              fprintf (stderr, "s3bd-testdata: %s: %s at offset %" PRIu64 "\n",
                       d.path, fill ? "write failed" : "wrong bytes", off);
              ret = 1;
              break;
            }
          off += n;
        }
      if (fd >= 0)
        close (fd);
      files++;
      bytes += d.size;
    }
  free (line);
  if (img >= 0 && close (img) == -1)
    ret = 1;
  if (ret == 0)
    printf ("%" PRIu64 " files, %" PRIu64 " bytes %s\n", files, bytes,
            fill ? "written" : "verified");
  return ret;
}

int
main (int argc, char **argv)
{
  if (argc == 3 && strcmp (argv[1], "fill") == 0)
    return cmd_fill_or_verify (argv[2], true);
  if (argc == 3 && strcmp (argv[1], "verify") == 0)
    return cmd_fill_or_verify (argv[2], false);
  if (argc == 4 && strcmp (argv[1], "gen") == 0)
    return cmd_gen (argv[2], argv[3]);
  if ((argc == 4 || argc == 5) && strcmp (argv[1], "check") == 0)
    return cmd_check (argv[2], argv[3], argc == 5 ? argv[4] : NULL);
  if (argc == 6 && strcmp (argv[1], "upload") == 0
      && strcmp (argv[2], "--endpoint") == 0)
    return cmd_upload (argv[3], argv[4], argv[5]);
  fprintf (stderr,
           "usage: s3bd-testdata gen KEY SIZE\n"
           "       s3bd-testdata check KEY OFFSET [FILE]\n"
           "       s3bd-testdata upload --endpoint URL s3://BUCKET/PREFIX "
           "SPEC\n"
           "       s3bd-testdata fill IMAGE < DUMP\n"
           "       s3bd-testdata verify DIR < DUMP\n");
  return 2;
}
