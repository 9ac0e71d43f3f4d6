/* s3bd-preload: writes the whole image of an index onto a file or a block
 * device, which then mounts as plain ext4 without s3bd.  See
 * docs/s3bd-preload.md.
 *
 * It is the plugin's hydrate= without a reader: a hydration (lib/serve/
 * hydrate.c) around the S3 fetcher, with its fill, run until every unit
 * has been tried; the state file beside DEST makes it resumable after an
 * interruption of any kind.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3bd/fetch.h"
#include "s3bd/hydrate.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"
#include "s3bd/version.h"
#include "s3opts.h"

static const char usage[]
    = "usage: s3bd-preload [OPTIONS] INDEX DEST\n"
      "Writes the image of INDEX (a file made by s3bd-mkimage, or s3://B/K)\n"
      "onto DEST (a file, created sparse, or a block device) and exits 0 when\n"
      "every byte is there.  Interrupted, it resumes where it stopped.\n"
      "options:\n"
      "  --state PATH        what DEST holds so far (default DEST.s3bd-state;\n"
      "                      required for a block device)\n"
      "  --requests N        GETs in flight (default 32)\n"
      "  --get-size SIZE     largest GET (default 8M)\n"
      "  --budget SIZE       bytes in flight (default 512M)\n"
      "  --max-rate SIZE     bytes per second at most (default: no limit)\n"
      "  --no-check          skip the one-byte GET that checks access first\n"
      "  -q, --quiet         no progress, only errors\n"
      "  -v, --verbose       a line per GET\n"
      "  -h, --help\n"
      "  -V, --version\n"
      "\n";

enum
{
  OPT_STATE = 256,
  OPT_REQUESTS,
  OPT_GET_SIZE,
  OPT_BUDGET,
  OPT_NO_CHECK,
  OPT_MAX_RATE,
};

static const struct option own_opts[] = {
  { "state", required_argument, NULL, OPT_STATE },
  { "requests", required_argument, NULL, OPT_REQUESTS },
  { "get-size", required_argument, NULL, OPT_GET_SIZE },
  { "budget", required_argument, NULL, OPT_BUDGET },
  { "no-check", no_argument, NULL, OPT_NO_CHECK },
  { "max-rate", required_argument, NULL, OPT_MAX_RATE },
  { "quiet", no_argument, NULL, 'q' },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

static volatile sig_atomic_t interrupted;
static int verbose;

static void
on_signal (int sig)
{
  interrupted = sig;
}

static void
log_line (enum s3bd_log_level level, const char *msg)
{
  if (level == S3BD_LOG_ERROR || (level == S3BD_LOG_DEBUG && verbose))
    fprintf (stderr, "s3bd-preload: %s\n", msg);
}

static uint64_t
size_opt (const char *opt, const char *s, uint64_t min, uint64_t max)
{
  uint64_t v;

  if (parse_size (s, &v) == -1 || v < min || v > max)
    {
      fprintf (stderr,
               "s3bd-preload: %s %s: expected a size from %" PRIu64
               " to %" PRIu64 " bytes (K, M, G suffixes)\n",
               opt, s, min, max);
      exit (2);
    }
  return v;
}

/* A new copy is made by hydrate_new: check access before it is. */
static bool
dest_is_new (const char *dest)
{
  struct stat st;

  return stat (dest, &st) == -1 ? errno == ENOENT
                                : S_ISREG (st.st_mode) && st.st_size == 0;
}

static void
show (struct hydrate *h, bool tty, bool final, double start)
{
  struct hydrate_stats s;
  double t = s3_now_ms () / 1000.0 - start;
  double rate, left;

  hydrate_get_stats (h, &s);
  rate = s.fill_ms ? s.fill_bytes / (s.fill_ms / 1000.0) : 0;
  left = rate > 0 ? (s.total_bytes - s.present_bytes) / rate : 0;
  if (tty && !final)
    fprintf (stderr, "\r%.2f of %.2f GiB (%.1f%%), %.1f MB/s, ETA %.0f s   ",
             s.present_bytes / 1073741824.0, s.total_bytes / 1073741824.0,
             s.total_bytes ? 100.0 * s.present_bytes / s.total_bytes : 100,
             rate / 1e6, left);
  if (final)
    fprintf (stderr,
             "%ss3bd-preload: %" PRIu64 " of %" PRIu64 " bytes there; %" PRIu64
             " bytes fetched in %" PRIu64 " GETs (%" PRIu64
             " failed) in %.1f s, %.1f MB/s\n",
             tty ? "\r\033[K" : "", s.present_bytes, s.total_bytes,
             s.fill_bytes, s.fill_gets, s.fill_failures, t, rate / 1e6);
}

int
main (int argc, char **argv)
{
  struct s3_config cfg = { 0 };
  struct option long_opts[64];
  struct s3bd_error err = { 0 };
  struct s3bd_index idx = { 0 };
  struct s3_client *client = NULL;
  struct fetch_s3_config fc = { 0 };
  struct hydrate_config hc = { 0 };
  struct hydrate *h = NULL;
  struct fetcher *f = NULL;
  struct hydrate_stats hs;
  const char *state = NULL, *index, *dest;
  unsigned requests = 32;
  uint64_t get_size = HYDRATE_FILL_GET, budget = 512 << 20, rate = 0;
  bool check = true, quiet = false, tty, checked = false;
  double start;
  int opt, rc = 1;

  s3opts_merge (own_opts, long_opts, 64);
  while ((opt = getopt_long (argc, argv, "qvhV", long_opts, NULL)) != -1)
    {
      if (opt >= S3OPTS_FIRST && opt <= S3OPTS_LAST)
        {
          s3opts_apply ("s3bd-preload", opt, optarg, &cfg);
          continue;
        }
      switch (opt)
        {
        case OPT_STATE: state = optarg; break;
        case OPT_REQUESTS:
          requests = opt_count ("s3bd-preload", "--requests", optarg, 1, 1024);
          break;
        case OPT_GET_SIZE:
          get_size = size_opt ("--get-size", optarg, HYDRATE_UNIT, 1 << 30);
          break;
        case OPT_BUDGET:
          budget = size_opt ("--budget", optarg, HYDRATE_UNIT, 1ULL << 40);
          break;
        case OPT_NO_CHECK: check = false; break;
        case OPT_MAX_RATE:
          rate = size_opt ("--max-rate", optarg, 4096, 1ULL << 40);
          break;
        case 'q': quiet = true; break;
        case 'v': verbose = 1; break;
        case 'h':
          fputs (usage, stdout);
          fputs (s3opts_help, stdout);
          return 0;
        case 'V': printf ("s3bd-preload %s\n", S3BD_VERSION); return 0;
        default: fputs (usage, stderr); return 2;
        }
    }
  if (optind + 2 != argc)
    {
      fputs (usage, stderr);
      return 2;
    }
  index = argv[optind];
  dest = argv[optind + 1];
  tty = !quiet && isatty (2);
  if (budget < get_size)
    budget = get_size;
  if (cfg.max_connections == 0)
    cfg.max_connections = requests;

  if (s3_client_new (&cfg, &client, &err) == -1
      || index_load (client, index, &idx, &err) == -1)
    goto fail;
  if (check && dest_is_new (dest))
    {
      if (fetch_s3_check (client, &idx, &err) == -1)
        goto fail;
      checked = true;
    }
  fc.client = client;
  fc.idx = &idx;
  fc.max_requests = requests;
  fc.log = log_line;
  fc.verbose = verbose;
  if (fetch_s3_new (&fc, &f, &err) == -1)
    goto fail;
  hc.idx = &idx;
  hc.path = dest;
  hc.state_path = state;
  hc.inner = f;
  hc.fill = true;
  hc.fill_requests = requests;
  hc.fill_budget = budget;
  hc.fill_get_size = get_size;
  hc.fill_rate = rate;
  hc.path_opt = "";
  hc.state_opt = "--state PATH";
  hc.log = log_line;
  hc.verbose = verbose;
  f = NULL; /* the hydration's now */
  if (hydrate_new (&hc, &h, &err) == -1)
    goto fail;
  if (hydrate_complete (h))
    {
      if (!quiet)
        fprintf (stderr, "s3bd-preload: %s is complete already\n", dest);
      rc = 0;
      goto out;
    }
  if (check && !checked && fetch_s3_check (client, &idx, &err) == -1)
    goto fail;

  signal (SIGINT, on_signal);
  signal (SIGTERM, on_signal);
  start = s3_now_ms () / 1000.0;
  if (fetcher_start (hydrate_fetcher (h), &err) == -1)
    goto fail;
  while (!interrupted && !hydrate_wait_fill (h, 500))
    if (tty)
      show (h, tty, false, start);
  /* Stopping writes the state a last time: then the counts are final. */
  fetcher_stop (hydrate_fetcher (h));
  if (!quiet)
    show (h, tty, true, start);
  hydrate_get_stats (h, &hs);
  if (interrupted)
    {
      fprintf (stderr,
               "s3bd-preload: interrupted; run the same command again to "
               "resume (%" PRIu64 " of %" PRIu64 " bytes there)\n",
               hs.present_bytes, hs.total_bytes);
      rc = 128 + interrupted;
    }
  else if (!hs.complete)
    fprintf (stderr,
             "s3bd-preload: %s is not complete: %" PRIu64
             " bytes missing (errors above); run it again to retry them\n",
             dest, hs.total_bytes - hs.present_bytes);
  else
    rc = 0;
  goto out;

fail:
  fprintf (stderr, "s3bd-preload: %s\n", err.msg);
out:
  fetcher_free (h ? hydrate_fetcher (h) : f);
  index_free (&idx);
  s3_client_free (client);
  return rc;
}
