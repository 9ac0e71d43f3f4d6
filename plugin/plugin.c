/* nbdkit-s3bd-plugin: an S3 dataset as a read-only ext4 block device.
 *
 * How this plugin works.
 *   The index (index=, a local file or an s3:// object) holds the ext4
 *   metadata of an image whose files are the dataset's objects, and where
 *   each object's bytes lie on the device.  With source=s3://B/P/ the
 *   plugin builds that index itself at start-up, with the call
 *   s3bd-mkimage makes (build_index), and decodes it as if read from a
 *   file: the device is the one index= would serve.
 *
 *   A pread is split by the map (index_lookup): metadata blocks are copied
 *   from the index, unused blocks read as zeros, and data blocks come from
 *   the chunk cache (cache.c), which fetches missing chunks with ranged
 *   GETs that carry If-Match: <the ETag in the index>.  The bytes past an
 *   object's end in its last block read as zeros.
 *
 *   Every read is also shown to the readahead policy (prefetch.c); the
 *   ranges it advises, within the global readahead budget, are mapped to
 *   objects and handed to cache_prefetch, which fetches them without
 *   waiting.  NBD_CMD_CACHE does the same for the range asked.
 *
 *   One worker thread (worker.c) owns the S3 engine: a curl multi handle
 *   with a pool of keep-alive connections and up to max-requests GETs in
 *   flight.  Fetches are submitted from the nbdkit threads; completions
 *   come back in the worker thread, which fills the cache and wakes the
 *   readers.  A failed fetch (object changed: 412; short body; retries
 *   exhausted) is logged once, naming the key and range, and every read
 *   waiting for it fails with EIO: never wrong bytes.
 *
 * Locks: prefetch_lock protects the policy's state only; the cache has
 * its own lock (never held across I/O or copies); the engine has its own.
 * No lock is held while calling into another module, except prefetch_lock
 * around prefetch_advise, which calls nothing.
 *
 * Export names: by default any name the client asks for is served (the
 * device is the same).  With export-name=NAME, list_exports and
 * default_export report NAME and open refuses any other name.
 *
 * Ownership: everything is global (the device is shared by every
 * connection); the per-connection handle is empty.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cache.h"
#include "plugin.h"
#include "prefetch.h"
#include "s3bd/build.h"
#include "s3bd/index.h"
#include "s3bd/s3.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* -D s3bd.verbose=1: one debug line per fetch and per prefetch decision. */
NBDKIT_DLL_PUBLIC int s3bd_debug_verbose = 0;

struct s3bd_state s3bd;

static struct s3_config s3cfg;
static const char *index_arg;
static const char *source_arg;
static const char *export_name;      /* NULL: serve any name */
/* source= only: how the image is built (s3bd-mkimage's options). */
static struct build_opts bopts;
static const char *build_key;        /* the last one given, for errors */
static uint64_t cache_size = 1ULL << 30;
static uint64_t chunk_size = 256 << 10;
static uint64_t max_fetch = 32 << 20;
static uint64_t readahead_max = 64 << 20;
static uint64_t readahead_budget = 512 << 20;
static unsigned max_requests = 64;
static const char *stats_file;

static struct prefetch *policy;
static pthread_mutex_t prefetch_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- Configuration ---- */

static int
parse_size_key (const char *key, const char *value, uint64_t min,
                uint64_t max, uint64_t *out)
{
  int64_t v = nbdkit_parse_size (value);

  if (v == -1)
    return -1;
  if ((uint64_t) v < min || (uint64_t) v > max)
    {
      nbdkit_error ("%s=%s: must be between %" PRIu64 " and %" PRIu64,
                    key, value, min, max);
      return -1;
    }
  *out = (uint64_t) v;
  return 0;
}

static int
parse_bool_key (const char *value, bool *out)
{
  int b = nbdkit_parse_bool (value);

  if (b == -1)
    return -1;
  *out = b;
  return 0;
}

/* The keys that shape the image built from source= (s3bd-mkimage's
 * options, parsed by the same call): 0 or -1 when key is one of them, 1
 * when it is not.
 */
static int
config_build_key (const char *key, const char *value)
{
  struct s3bd_error err = { 0 };
  int r = build_opts_set (&bopts, key, value, &err);

  if (r == 1)
    return 1;
  build_key = key;
  if (r == -1)
    nbdkit_error ("%s=%s: %s", key, value, err.msg);
  return r;
}

static int
s3bd_config (const char *key, const char *value)
{
  uint64_t v;
  bool b;
  int r = config_build_key (key, value);

  if (r != 1)
    return r;
  if (strcmp (key, "index") == 0)
    index_arg = value;
  else if (strcmp (key, "source") == 0)
    source_arg = value;
  else if (strcmp (key, "export-name") == 0)
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
      export_name = value;
    }
  else if (strcmp (key, "endpoint") == 0)
    s3cfg.endpoint = value;
  else if (strcmp (key, "region") == 0)
    s3cfg.region = value;
  else if (strcmp (key, "profile") == 0)
    s3cfg.creds.profile = value;
  else if (strcmp (key, "path-style") == 0)
    {
      if (parse_bool_key (value, &b) == -1)
        return -1;
      s3cfg.addressing = b ? S3_ADDR_PATH : S3_ADDR_VIRTUAL;
    }
  else if (strcmp (key, "ca-file") == 0)
    s3cfg.ca_file = value;
  else if (strcmp (key, "tls-verify") == 0)
    {
      if (parse_bool_key (value, &b) == -1)
        return -1;
      s3cfg.no_verify_tls = !b;
    }
  else if (strcmp (key, "anonymous") == 0)
    {
      if (parse_bool_key (value, &b) == -1)
        return -1;
      s3cfg.creds.anonymous = b;
    }
  else if (strcmp (key, "cache-size") == 0)
    return parse_size_key (key, value, 16 << 20, 1ULL << 40, &cache_size);
  else if (strcmp (key, "chunk-size") == 0)
    {
      if (parse_size_key (key, value, 4096, 64 << 20, &chunk_size) == -1)
        return -1;
      if (chunk_size & (chunk_size - 1))
        {
          nbdkit_error ("chunk-size=%s: must be a power of two", value);
          return -1;
        }
    }
  else if (strcmp (key, "max-fetch") == 0)
    return parse_size_key (key, value, 4096, 1 << 30, &max_fetch);
  else if (strcmp (key, "readahead-max") == 0)
    return parse_size_key (key, value, 0, 1 << 30, &readahead_max);
  else if (strcmp (key, "readahead-budget") == 0)
    return parse_size_key (key, value, 0, 1ULL << 40, &readahead_budget);
  else if (strcmp (key, "max-requests") == 0)
    {
      if (parse_size_key (key, value, 1, 1024, &v) == -1)
        return -1;
      max_requests = (unsigned) v;
    }
  else if (strcmp (key, "retries") == 0)
    {
      if (parse_size_key (key, value, 1, 100, &v) == -1)
        return -1;
      s3cfg.max_attempts = (unsigned) v;
    }
  else if (strcmp (key, "timeout") == 0)
    {
      /* Seconds: the whole-request retry budget. */
      if (parse_size_key (key, value, 1, 86400, &v) == -1)
        return -1;
      s3cfg.retry_budget_ms = (unsigned) v * 1000;
    }
  else if (strcmp (key, "connect-timeout") == 0)
    {
      if (parse_size_key (key, value, 1, 600, &v) == -1)
        return -1;
      s3cfg.connect_timeout_ms = (unsigned) v * 1000;
    }
  else if (strcmp (key, "stats-file") == 0)
    stats_file = value;
  else
    {
      nbdkit_error ("unknown parameter '%s' (see nbdkit-s3bd-plugin(1))",
                    key);
      return -1;
    }
  return 0;
}

static int
s3bd_config_complete (void)
{
  struct s3bd_error err = { 0 };
  char *bucket, *prefix;

  if (index_arg && source_arg)
    {
      nbdkit_error ("index= and source= exclude each other: serve an index "
                    "made by s3bd-mkimage, or build one from source= at "
                    "start-up");
      return -1;
    }
  if (index_arg == NULL && source_arg == NULL)
    {
      nbdkit_error ("give index=PATH|s3://BUCKET/KEY (an index made by "
                    "s3bd-mkimage) or source=s3://BUCKET/PREFIX/ (built "
                    "at start-up)");
      return -1;
    }
  if (index_arg && build_key)
    {
      nbdkit_error ("%s= applies to source= only: an index made by "
                    "s3bd-mkimage was built with its own options",
                    build_key);
      return -1;
    }
  if (source_arg)
    {
      /* Its message starts with the URI: "source=URI: no bucket name". */
      if (s3_parse_uri (source_arg, &bucket, &prefix, &err) == -1)
        {
          nbdkit_error ("source=%s", err.msg);
          return -1;
        }
      free (bucket);
      free (prefix);
    }
  if (chunk_size > max_fetch)
    {
      nbdkit_error ("chunk-size (%" PRIu64 ") must not exceed max-fetch (%"
                    PRIu64 ")", chunk_size, max_fetch);
      return -1;
    }
  if (cache_size < 4 * (uint64_t) max_requests * chunk_size / 4
      || cache_size < 8 * chunk_size)
    {
      nbdkit_error ("cache-size (%" PRIu64 ") is too small for chunk-size %"
                    PRIu64 ": give it at least 8 chunks", cache_size,
                    chunk_size);
      return -1;
    }
  if (readahead_budget > cache_size / 2)
    readahead_budget = cache_size / 2;   /* leave room for demand reads */
  return 0;
}

#define s3bd_config_help \
  "index=PATH|s3://B/K  the index made by s3bd-mkimage, or:\n" \
  "source=s3://B/P/     build the index of this prefix at start-up\n" \
  "  uid=N, gid=N       source=: owner of every file (default 0)\n" \
  "  file-mode=MODE     source=: default 0444\n" \
  "  dir-mode=MODE      source=: default 0555\n" \
  "  label=NAME         source=: file system label (default none)\n" \
  "  shard=I/N          source=: keep objects I, I+N... (default all)\n" \
  "export-name=NAME     serve this export name only (default: any name)\n" \
  "endpoint=URL         S3 endpoint (default: environment, profile, AWS)\n" \
  "region=R             region (default: environment, profile, us-east-1)\n" \
  "profile=P            credentials/config profile\n" \
  "path-style=BOOL      path-style addressing (default: auto)\n" \
  "ca-file=FILE         CA bundle for TLS\n" \
  "tls-verify=BOOL      verify certificates (default true)\n" \
  "anonymous=BOOL       unsigned requests (default false)\n" \
  "cache-size=SIZE      memory for cached chunks (default 1G)\n" \
  "chunk-size=SIZE      cache granule, power of two (default 256K)\n" \
  "max-fetch=SIZE       largest single GET (default 32M)\n" \
  "readahead-max=SIZE   largest readahead window per stream (default 64M)\n" \
  "readahead-budget=SIZE readahead bytes in flight or unread (default 512M)\n" \
  "max-requests=N       GETs in flight (default 64)\n" \
  "retries=N            attempts per GET (default 8)\n" \
  "timeout=SECONDS      give up on a GET after this long, retries included\n" \
  "                     (default 60)\n" \
  "connect-timeout=SECONDS (default 5)\n" \
  "stats-file=PATH      rewrite statistics to PATH every second"

/* ---- Start-up ---- */

static void
s3bd_load (void)
{
  build_opts_init (&bopts);
}

/* source=: the index s3bd-mkimage would write for the same prefix and
 * options (and SOURCE_DATE_EPOCH), built and decoded in memory.  Going
 * through the encoded bytes costs a little time but makes the device
 * exactly the one index= would serve, checked by the same decoder.
 */
static int
build_source (struct s3bd_error *err)
{
  struct build_result res;
  double start = s3_now_ms () / 1000.0;
  size_t nfiles, nleft;
  int r;

  bopts.prefix_uri = source_arg;
  bopts.time = build_source_date_epoch ();
  if (build_index (s3bd.client, &bopts, &res, err) == -1)
    {
      s3bd_error_prefix (err, "source");
      return -1;
    }
  nfiles = res.ds.nfiles;
  nleft = res.ds.nleft;
  for (size_t i = 0; s3bd_debug_verbose && i < nleft; i++)
    nbdkit_debug ("s3bd: left out s3://%s/%s: %s",
                  res.ds.buckets[res.ds.left[i].bucket], res.ds.left[i].key,
                  ds_reason_text (res.ds.left[i].reason));
  dataset_free (&res.ds);       /* before decoding: a lower peak */
  r = index_decode (res.index, res.index_len, &s3bd.idx, err);
  if (r == 0)
    /* At start-up, whatever the verbosity, like the stats at exit: the
     * operator wants to see what is being served.
     */
    fprintf (stderr, "nbdkit: s3bd: source %s: %zu objects, %" PRIu64
             " bytes, %zu left out, %" PRIu64 " directories; device %"
             PRIu64 " MiB, index %zu bytes; built in %.2f s\n",
             source_arg, nfiles, res.bytes, nleft, res.dirs,
             s3bd.idx.device_blocks * s3bd.idx.block_size >> 20,
             res.index_len, s3_now_ms () / 1000.0 - start);
  else
    s3bd_error_prefix (err, "source %s: the index built", source_arg);
  build_result_free (&res);
  return r;
}

static int
load_index (struct s3bd_error *err)
{
  char *buf;
  size_t len;
  int r;

  if (source_arg)
    return build_source (err);
  if (strncmp (index_arg, "s3://", 5) != 0)
    return index_read_file (index_arg, &s3bd.idx, err);
  r = s3_read_object (s3bd.client, index_arg, &buf, &len, err) == 0
      && index_decode (buf, len, &s3bd.idx, err) == 0 ? 0 : -1;
  if (r == -1)
    s3bd_error_prefix (err, "index %s", index_arg);
  free (buf);
  return r;
}

static int
s3bd_get_ready (void)
{
  struct s3bd_error err = { 0 };
  struct cache_config cc = { cache_size, chunk_size, max_fetch };
  struct cache_ops ops = { worker_fetch, NULL };
  struct prefetch_config pc = { 0 };

  s3cfg.max_connections = max_requests;
  if (s3_client_new (&s3cfg, &s3bd.client, &err) == -1)
    goto fail;
  if (load_index (&err) == -1)
    goto fail;
  if (cache_new (&cc, &ops, &s3bd.cache, &err) == -1)
    goto fail;
  pc.max_window = readahead_max;
  pc.min_window = readahead_max < (512 << 10) ? readahead_max : 512 << 10;
  pc.device_size = s3bd.idx.device_blocks * s3bd.idx.block_size;
  policy = prefetch_new (&pc);
  if (policy == NULL)
    {
      s3bd_fail (&err, S3BD_ENOMEM, "out of memory");
      goto fail;
    }
  nbdkit_debug ("s3bd: %s %s: %" PRIu64 " objects, device %" PRIu64
                " bytes; endpoint %s, credentials from %s",
                source_arg ? "source" : "index",
                source_arg ? source_arg : index_arg,
                s3bd.idx.nobjects, pc.device_size,
                s3_client_endpoint (s3bd.client),
                creds_source (s3_client_creds (s3bd.client)));
  return 0;

fail:
  nbdkit_error ("%s", err.msg);
  return -1;
}

static int
s3bd_after_fork (void)
{
  struct s3bd_error err = { 0 };

  if (worker_start (s3bd.client, max_requests, stats_file, &err) == -1)
    {
      nbdkit_error ("%s", err.msg);
      return -1;
    }
  return 0;
}

static void
s3bd_cleanup (void)
{
  char line[1024];

  worker_stop ();
  if (s3bd.cache)
    {
      stats_line (line, sizeof line);
      /* At exit, whatever the verbosity: the operator wants these. */
      fprintf (stderr, "nbdkit: s3bd: %s\n", line);
    }
}

static void
s3bd_unload (void)
{
  worker_free ();
  prefetch_free (policy);
  if (s3bd.cache)
    cache_free (s3bd.cache);
  index_free (&s3bd.idx);
  s3_client_free (s3bd.client);
}

/* ---- Export names ---- */

static int
s3bd_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  if (export_name == NULL)
    return nbdkit_use_default_export (exports);   /* "", as before */
  return nbdkit_add_export (exports, export_name,
                            source_arg ? source_arg : index_arg);
}

static const char *
s3bd_default_export (int readonly, int is_tls)
{
  /* A client asking for the default export ("") gets the one there is. */
  return export_name ? export_name : "";
}

/* ---- Per connection ---- */

static void *
s3bd_open (int readonly)
{
  if (export_name)
    {
      /* The name the client asked for; "" was already turned into
       * export_name by default_export.
       */
      const char *name = nbdkit_export_name ();
      char shown[65];
      size_t i;

      if (name == NULL)
        return NULL;
      if (strcmp (name, export_name) != 0)
        {
          /* The client's bytes, cut and with control characters
           * replaced: they must not forge a line of the log.
           */
          for (i = 0; name[i] && i < sizeof shown - 1; i++)
            shown[i] = (unsigned char) name[i] < 0x20 || name[i] == 0x7f
                       ? '?' : name[i];
          shown[i] = '\0';
          nbdkit_error ("export '%s%s' not found: this server serves '%s' "
                        "only", shown, name[i] ? "..." : "", export_name);
          return NULL;
        }
    }
  /* Everything is shared; the handle only has to be non-NULL. */
  return &s3bd;
}

static int64_t
s3bd_get_size (void *handle)
{
  return (int64_t) (s3bd.idx.device_blocks * s3bd.idx.block_size);
}

static int
s3bd_can_write (void *handle)
{
  return 0;
}

static int
s3bd_can_multi_conn (void *handle)
{
  /* Read-only, one shared cache: every connection sees the same bytes. */
  return 1;
}

static int
s3bd_can_cache (void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
s3bd_can_extents (void *handle)
{
  return 1;
}

static int
s3bd_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                 uint32_t *maximum)
{
  *minimum = 1;
  *preferred = s3bd.idx.block_size;
  *maximum = 0xffffffff;
  return 0;
}

/* ---- Reads ---- */

/* Readahead: ask the policy, map its device ranges to objects, start the
 * fetches.
 */
static void
advise (uint64_t off, uint64_t len)
{
  struct prefetch_range r[8];
  uint64_t ahead = cache_ahead_bytes (s3bd.cache);
  uint64_t budget = ahead < readahead_budget ? readahead_budget - ahead : 0;
  size_t n;

  if (readahead_max == 0)
    return;
  pthread_mutex_lock (&prefetch_lock);
  n = prefetch_advise (policy, off, len, budget, r, 8);
  pthread_mutex_unlock (&prefetch_lock);
  for (size_t i = 0; i < n; i++)
    {
      if (s3bd_debug_verbose)
        nbdkit_debug ("s3bd: readahead %" PRIu64 "+%" PRIu64, r[i].off,
                      r[i].len);
      prefetch_range (r[i].off, r[i].len);
    }
}

static int
s3bd_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct s3bd_error err = { 0 };

  /* Readahead first: with several connections the kernel's requests
   * arrive in parallel, and fetches started now overlap this read.
   */
  advise (offset, count);
  if (read_range (buf, count, offset, &err) == -1)
    {
      /* The fetch that failed was logged once, where it failed; this
       * read only reports it to the client.
       */
      if (s3bd_debug_verbose)
        nbdkit_debug ("s3bd: read %" PRIu64 "+%" PRIu32 ": %s", offset,
                      count, err.msg);
      nbdkit_set_error (EIO);
      return -1;
    }
  return 0;
}

static int
s3bd_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  prefetch_range (offset, count);
  return 0;
}

static int
s3bd_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  return map_extents (count, offset, extents);
}

static struct nbdkit_plugin plugin = {
  .name = "s3bd",
  .longname = "s3bd: an S3 dataset as a read-only ext4 block device",
  .version = "0.1.0",
  .load = s3bd_load,
  .config = s3bd_config,
  .config_complete = s3bd_config_complete,
  .config_help = s3bd_config_help,
  .magic_config_key = "index",
  .get_ready = s3bd_get_ready,
  .after_fork = s3bd_after_fork,
  .cleanup = s3bd_cleanup,
  .unload = s3bd_unload,
  .list_exports = s3bd_list_exports,
  .default_export = s3bd_default_export,
  .open = s3bd_open,
  .get_size = s3bd_get_size,
  .can_write = s3bd_can_write,
  .can_multi_conn = s3bd_can_multi_conn,
  .can_cache = s3bd_can_cache,
  .can_extents = s3bd_can_extents,
  .block_size = s3bd_block_size,
  .pread = s3bd_pread,
  .cache = s3bd_cache,
  .extents = s3bd_extents,
  .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN (plugin)
