/* nbdkit-s3bd-plugin: the parameters, in one table of meanings
 * (docs/nbdkit-s3bd-plugin.md documents each with its default).
 *
 * Three families share the keys: the image options of source= (parsed by
 * build_opts_set, as s3bd-mkimage parses them), the S3 connection options
 * (s3_config_set, as the commands parse them), and the plugin's own.
 * Unknown keys are refused; .config_complete checks them together.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "plugin.h"
#include "s3bd/parse.h"

struct s3bd_params params = {
  .serve = {
    .cache_size = 1ULL << 30,
    .chunk_size = 256 << 10,
    .max_fetch = 32 << 20,
    .readahead_max = 64 << 20,
    .readahead_budget = 512 << 20,
  },
  .max_requests = 64,
  .verify_max = 1 << 20,
  .check = true,
  .hydrate_fill = true,
  .hydrate_requests = 32,
  .pipe = {
    .dir = "/opt/ml/input/data",
    .shard_count = 1,
    .readers = 1,
  },
};

/* pipe-dir= and the other pipe keys were given: they need pipe=. */
static const char *pipe_key;

/* Of the image options, the last one given, for errors. */
static const char *build_key;

void
config_load (void)
{
  build_opts_init (&params.build);
}

static int
size_key (const char *key, const char *value, uint64_t min, uint64_t max,
          uint64_t *out)
{
  int64_t v = nbdkit_parse_size (value);

  if (v == -1)
    return -1;
  if ((uint64_t)v < min || (uint64_t)v > max)
    {
      nbdkit_error ("%s=%s: must be between %" PRIu64 " and %" PRIu64, key,
                    value, min, max);
      return -1;
    }
  *out = (uint64_t)v;
  return 0;
}

static int
count_key (const char *key, const char *value, unsigned min, unsigned max,
           unsigned *out)
{
  struct s3bd_error err = { 0 };
  uint64_t v;

  if (parse_count (value, min, max, &v, &err) == -1)
    {
      nbdkit_error ("%s=%s: %s", key, value, err.msg);
      return -1;
    }
  *out = (unsigned)v;
  return 0;
}

/* A key that names one thing may be given once. */
static int
once (const char *key, const char *value, const char **out)
{
  if (*out)
    {
      nbdkit_error ("%s= given twice (%s and %s)", key, *out, value);
      return -1;
    }
  *out = value;
  return 0;
}

/* pipe=, pipe-dir=, epochs=, pipe-start=, shuffle-seed=,
 * record-wrapper=, compression=, pipe-shard=, pipe-readers=: 0 taken,
 * -1 refused, 1 not a pipe key.
 */
static int
pipe_config (const char *key, const char *value)
{
  struct s3bd_error err = { 0 };
  struct pipe_config *pc = &params.pipe;
  uint64_t v, i, n;

  if (strcmp (key, "pipe") == 0)
    {
      if (*value == '\0' || strlen (value) > 200 || strchr (value, '/'))
        {
          nbdkit_error ("pipe=%s: a channel name is 1 to 200 bytes, no '/'",
                        value);
          return -1;
        }
      if (pc->channel)
        {
          nbdkit_error ("pipe= given twice (%s and %s)", pc->channel, value);
          return -1;
        }
      pc->channel = value;
      return 0;
    }
  if (strcmp (key, "pipe-dir") != 0 && strcmp (key, "epochs") != 0
      && strcmp (key, "pipe-start") != 0 && strcmp (key, "shuffle-seed") != 0
      && strcmp (key, "record-wrapper") != 0 && strcmp (key, "compression") != 0
      && strcmp (key, "pipe-shard") != 0 && strcmp (key, "pipe-readers") != 0)
    return 1;
  pipe_key = key;
  if (strcmp (key, "pipe-dir") == 0)
    {
      if (*value == '\0' || strlen (value) > 3000)
        {
          nbdkit_error ("pipe-dir=%s: must be 1 to 3000 bytes", value);
          return -1;
        }
      pc->dir = value;
      return 0;
    }
  if (strcmp (key, "record-wrapper") == 0)
    {
      if (strcmp (value, "none") == 0)
        pc->wrapper = PIPE_WRAP_NONE;
      else if (strcmp (value, "recordio") == 0)
        pc->wrapper = PIPE_WRAP_RECORDIO;
      else
        {
          nbdkit_error ("record-wrapper=%s: expected none or recordio", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "compression") == 0)
    {
      if (strcmp (value, "none") == 0)
        pc->compression = PIPE_COMPRESS_NONE;
      else if (strcmp (value, "gzip") == 0)
        pc->compression = PIPE_COMPRESS_GZIP;
      else
        {
          nbdkit_error ("compression=%s: expected none or gzip", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "pipe-shard") == 0)
    {
      const char *slash = strchr (value, '/');
      char first[32];

      if (slash == NULL || (size_t)(slash - value) >= sizeof first)
        goto bad_shard;
      memcpy (first, value, (size_t)(slash - value));
      first[slash - value] = '\0';
      if (parse_unsigned (first, 10, 65535, &i) == -1
          || parse_unsigned (slash + 1, 10, 65536, &n) == -1 || n == 0
          || i >= n)
        goto bad_shard;
      pc->shard_index = (uint32_t)i;
      pc->shard_count = (uint32_t)n;
      return 0;
    }
  if (strcmp (key, "pipe-readers") == 0)
    {
      if (parse_count (value, 1, 256, &v, &err) == -1)
        goto bad;
      pc->readers = (unsigned)v;
      return 0;
    }
  if (strcmp (key, "shuffle-seed") == 0)
    {
      if (parse_count (value, 0, UINT64_MAX, &v, &err) == -1)
        goto bad;
      pc->seeded = true;
      pc->seed = v;
      return 0;
    }
  if (parse_count (value, strcmp (key, "epochs") == 0 ? 1 : 0, UINT64_MAX - 1,
                   &v, &err)
      == -1)
    goto bad;
  if (strcmp (key, "epochs") == 0)
    pc->epochs = v;
  else
    pc->start = v;
  return 0;

bad:
  nbdkit_error ("%s=%s: %s", key, value, err.msg);
  return -1;
bad_shard:
  nbdkit_error ("pipe-shard=%s: expected I/N with 0 <= I < N <= 65536", value);
  return -1;
}

int
s3bd_config (const char *key, const char *value)
{
  struct s3bd_error err = { 0 };
  struct serve_config *sc = &params.serve;
  int r;

  r = build_opts_set (&params.build, key, value, &err);
  if (r != 1)
    build_key = key;
  if (r == 1)
    r = s3_config_set (&params.s3, key, value, &err);
  if (r == -1)
    {
      nbdkit_error ("%s=%s: %s", key, value, err.msg);
      return -1;
    }
  if (r == 0)
    return 0;

  r = pipe_config (key, value);
  if (r != 1)
    return r;
  if (strcmp (key, "index") == 0)
    return once (key, value, &params.index);
  if (strcmp (key, "source") == 0)
    return once (key, value, &params.source);
  if (strcmp (key, "export-name") == 0)
    {
      /* The protocol's limit; "" is every client's default, which is
       * what leaving the key out serves already.
       */
      if (*value == '\0' || strlen (value) > 4096)
        {
          nbdkit_error ("export-name: must be 1 to 4096 bytes (leave it "
                        "out to accept any name)");
          return -1;
        }
      return once (key, value, &params.export_name);
    }
  if (strcmp (key, "stats-file") == 0)
    return once (key, value, &params.stats_file);
  if (strcmp (key, "stats-format") == 0)
    {
      if (strcmp (value, "json") == 0)
        params.stats_json = true;
      else if (strcmp (value, "text") == 0)
        params.stats_json = false;
      else
        {
          nbdkit_error ("stats-format: %s: must be text or json", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "hydrate") == 0)
    return once (key, value, &params.hydrate);
  if (strcmp (key, "hydrate-state") == 0)
    return once (key, value, &params.hydrate_state);
  if (strcmp (key, "hydrate-fill") == 0)
    {
      if (parse_bool (value, &params.hydrate_fill) == -1)
        {
          nbdkit_error ("hydrate-fill=%s: expected true or false", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "hydrate-max-rate") == 0)
    return size_key (key, value, 4096, 1ULL << 40, &params.hydrate_rate);
  if (strcmp (key, "hydrate-requests") == 0)
    return count_key (key, value, 1, 1024, &params.hydrate_requests);
  if (strcmp (key, "check") == 0)
    {
      if (parse_bool (value, &params.check) == -1)
        {
          nbdkit_error ("check=%s: expected true or false", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "cache-size") == 0)
    return size_key (key, value, 16 << 20, 1ULL << 40, &sc->cache_size);
  if (strcmp (key, "chunk-size") == 0)
    {
      if (size_key (key, value, 4096, 64 << 20, &sc->chunk_size) == -1)
        return -1;
      if (sc->chunk_size & (sc->chunk_size - 1))
        {
          nbdkit_error ("chunk-size=%s: must be a power of two", value);
          return -1;
        }
      return 0;
    }
  if (strcmp (key, "verify-max") == 0)
    return size_key (key, value, 0, 1ULL << 40, &params.verify_max);
  if (strcmp (key, "max-fetch") == 0)
    return size_key (key, value, 4096, 1 << 30, &sc->max_fetch);
  if (strcmp (key, "readahead-max") == 0)
    return size_key (key, value, 0, 1 << 30, &sc->readahead_max);
  if (strcmp (key, "readahead-budget") == 0)
    return size_key (key, value, 0, 1ULL << 40, &sc->readahead_budget);
  if (strcmp (key, "max-requests") == 0)
    return count_key (key, value, 1, 1024, &params.max_requests);
  nbdkit_error ("unknown parameter '%s' (see nbdkit-s3bd-plugin(1))", key);
  return -1;
}

int
s3bd_config_complete (void)
{
  struct s3bd_error err = { 0 };
  struct serve_config *sc = &params.serve;
  uint64_t min_cache;
  char *bucket, *prefix;

  if (params.index && params.source)
    {
      nbdkit_error ("index= and source= exclude each other: serve an index "
                    "made by s3bd-mkimage, or build one from source= at "
                    "start-up");
      return -1;
    }
  if (params.index == NULL && params.source == NULL)
    {
      nbdkit_error ("give index=PATH|s3://BUCKET/KEY (an index made by "
                    "s3bd-mkimage) or source=s3://BUCKET/PREFIX/ (built "
                    "at start-up)");
      return -1;
    }
  if (params.index && build_key)
    {
      nbdkit_error ("%s= applies to source= only: an index made by "
                    "s3bd-mkimage was built with its own options",
                    build_key);
      return -1;
    }
  if (params.source)
    {
      /* Its message starts with the URI: "source=URI: no bucket name". */
      if (s3_parse_uri (params.source, &bucket, &prefix, &err) == -1)
        {
          nbdkit_error ("source=%s", err.msg);
          return -1;
        }
      free (bucket);
      free (prefix);
    }
  if (params.hydrate_state && params.hydrate == NULL)
    {
      nbdkit_error ("hydrate-state= needs hydrate=PATH (the local copy it "
                    "describes)");
      return -1;
    }
  if (pipe_key && params.pipe.channel == NULL)
    {
      nbdkit_error ("%s= needs pipe=CHANNEL (the Pipe export it configures)",
                    pipe_key);
      return -1;
    }
  if (params.pipe.epochs && params.pipe.start >= params.pipe.epochs)
    {
      nbdkit_error ("pipe-start=%" PRIu64 " must be below epochs=%" PRIu64
                    " (epochs pipe-start to epochs - 1 are streamed)",
                    params.pipe.start, params.pipe.epochs);
      return -1;
    }
  if (sc->chunk_size > sc->max_fetch)
    {
      nbdkit_error ("chunk-size (%" PRIu64
                    ") must not exceed max-fetch (%" PRIu64 ")",
                    sc->chunk_size, sc->max_fetch);
      return -1;
    }
  /* Room for a chunk for every GET in flight, and for 8 chunks at least:
   * below that, readers evict each other's chunks before copying them.
   */
  min_cache
      = sc->chunk_size * (params.max_requests > 8 ? params.max_requests : 8);
  if (sc->cache_size < min_cache)
    {
      nbdkit_error ("cache-size (%" PRIu64 ") is too small: it must hold "
                    "max(8, max-requests = %u) chunks of chunk-size %" PRIu64
                    ", %" PRIu64 " bytes",
                    sc->cache_size, params.max_requests, sc->chunk_size,
                    min_cache);
      return -1;
    }
  if (sc->readahead_budget > sc->cache_size / 2)
    sc->readahead_budget = sc->cache_size / 2; /* room for demand reads */
  /* The pool of connections serves the GETs in flight unless given. */
  if (params.s3.max_connections == 0)
    params.s3.max_connections
        = params.max_requests + (params.hydrate ? params.hydrate_requests : 0);
  return 0;
}

const char s3bd_config_help_text[]
    = "index=PATH|s3://B/K  the index made by s3bd-mkimage, or:\n"
      "source=s3://B/P/     build the index of this prefix at start-up\n"
      "  uid=N, gid=N       source=: owner of every file (default 0)\n"
      "  file-mode=MODE     source=: default 0444\n"
      "  dir-mode=MODE      source=: default 0555\n"
      "  label=NAME         source=: file system label (default none)\n"
      "  shard=I/N          source=: keep objects I, I+N... (default all)\n"
      "export-name=NAME     serve this export name only (default: any name)\n"
      "endpoint=URL         S3 endpoint (default: environment, profile, AWS)\n"
      "region=R             region (default: environment, profile, us-east-1)\n"
      "profile=P            credentials/config profile\n"
      "path-style=BOOL      path-style addressing (default: auto)\n"
      "ca-file=FILE         CA bundle for TLS\n"
      "tls-verify=BOOL      verify certificates (default true)\n"
      "anonymous=BOOL       unsigned requests (default false)\n"
      "connections=N        connection pool (default: max-requests)\n"
      "retries=N            attempts per GET at most (default: no count,\n"
      "                     retries until timeout= within the retry quota)\n"
      "timeout=SECONDS      deadline of a GET, retries included (default 60)\n"
      "connect-timeout=SECONDS  of one connection (default 5)\n"
      "stall-timeout=SECONDS  retry an attempt stalled this long (default 5)\n"
      "cache-size=SIZE      memory for cached chunks (default 1G)\n"
      "chunk-size=SIZE      cache granule, power of two (default 256K)\n"
      "max-fetch=SIZE       largest single GET (default 32M)\n"
      "readahead-max=SIZE   largest readahead window per stream (default 64M)\n"
      "readahead-budget=SIZE readahead bytes in flight or unread (default "
      "512M)\n"
      "max-requests=N       GETs in flight (default 64)\n"
      "verify-max=SIZE      check whole-object GETs up to SIZE against the\n"
      "                     ETag's MD5 (default 1M; 0: none)\n"
      "stats-file=PATH      rewrite statistics to PATH every second\n"
      "stats-format=text|json  the stats file's form (default text)\n"
      "hydrate=PATH         keep every byte fetched in PATH (a file, made\n"
      "                     sparse, or a block device) and serve it from "
      "there\n"
      "  hydrate-state=PATH the record of what PATH holds (default\n"
      "                     PATH.s3bd-state; required for a block device)\n"
      "  hydrate-fill=BOOL  fetch everything in the background (default true)\n"
      "  hydrate-requests=N fill GETs in flight (default 32)\n"
      "  hydrate-max-rate=SIZE  fill bytes per second (default: no limit)\n"
      "pipe=CHANNEL         also stream the objects in SageMaker Pipe mode\n"
      "                     FIFOs DIR/CHANNEL_EPOCH (default: off)\n"
      "  pipe-dir=DIR       where (default /opt/ml/input/data)\n"
      "  epochs=N           epochs 0 to N-1 (default: no limit)\n"
      "  pipe-start=E       first epoch, to resume (default 0)\n"
      "  shuffle-seed=N     shuffle every epoch (default: index order)\n"
      "  record-wrapper=none|recordio  (default none)\n"
      "  compression=none|gzip  objects are gzip, sent inflated (default "
      "none)\n"
      "  pipe-shard=I/N     part I of N of every epoch, by bytes (default "
      "all)\n"
      "  pipe-readers=N     N FIFOs CHANNEL-R_EPOCH, disjoint (default 1)\n"
      "check=BOOL           one signed GET of an object before serving, so\n"
      "                     that bad credentials stop nbdkit (default true)";
