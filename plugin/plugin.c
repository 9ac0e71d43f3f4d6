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
 *   The data path is libs3bd's (lib/serve/, serve.h), which knows nothing
 *   of nbdkit; this file is its callbacks.  A pread goes to serve_read:
 *   it shows the read to the readahead policy (prefetch.c), starts the
 *   fetches it advises within the global readahead budget, and splits the
 *   read by the map (map.c): metadata blocks are copied from the index,
 *   unused blocks read as zeros, and data blocks come from the chunk
 *   cache (cache.c).  The bytes past an object's end in its last block
 *   read as zeros.  NBD_CMD_CACHE starts fetching the range asked.
 *
 *   The cache gets its bytes from one fetch backend (fetch.h), here the
 *   S3 one (fetch-s3.c): a thread of its own owns a curl multi handle
 *   with a pool of keep-alive connections and up to max-requests ranged
 *   GETs in flight, each with If-Match: <the ETag in the index>.  A
 *   failed fetch (object changed: 412; short body; retries exhausted) is
 *   logged once, naming the key and range, and every read waiting for it
 *   fails with EIO: never wrong bytes.
 *
 *   config.c holds the parameters; stats.c the statistics.
 *
 * Locks: none here.  The readahead policy, the cache and the engine have
 * their own, and none is held across a call into another module (see
 * serve.h).
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
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "plugin.h"
#include "s3bd/version.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The largest read (and NBD_CMD_CACHE) served, advertised as the maximum
 * block size; larger requests fail with EINVAL.  It is what bounds the
 * memory beyond cache-size: nbdkit gives each of its worker threads
 * (-t per connection) a buffer as large as the largest read the thread
 * has served, kept until the connection closes, and a read that misses
 * the cache may hold its chunks past cache-size while it copies them.
 * So each request nbdkit runs at once costs up to about 2 * MAX_REQUEST
 * + chunk-size (docs/nbdkit-s3bd-plugin.md, "Memory").  1 MiB is the least
 * the NBD protocol wants a server to take in one request; clients that
 * honour block sizes (libnbd, nbdcopy, qemu, nbdfuse) split bigger I/O,
 * and s3bd-attach tells the kernel's nbd driver, which cannot learn it
 * from the server, with max_sectors_kb.
 */
#define MAX_REQUEST (1u << 20)

/* -D s3bd.verbose=1: one debug line per fetch, per retry and per
 * prefetch decision.
 */
NBDKIT_DLL_PUBLIC int s3bd_debug_verbose = 0;

struct s3bd_state s3bd;

void
plugin_log (enum s3bd_log_level level, const char *msg)
{
  if (level == S3BD_LOG_ERROR)
    nbdkit_error ("%s", msg);
  else
    nbdkit_debug ("%s", msg);
}

/* ---- Start-up ---- */

/* glibc raises its mmap threshold to the size of each mmap'd block freed
 * (up to 32 MiB): once a connection closes and its threads free their
 * read buffers, the next connections' buffers come from the heap, which
 * keeps the memory when they are freed in turn, so peak RSS creeps up as
 * clients reconnect.  Setting the threshold (to glibc's default) turns
 * the adjustment off: nbdkit's read buffers and every other block of
 * 128 KiB or more are mmap'd, and go back to the kernel when freed.
 */
#define MMAP_THRESHOLD (128 << 10)

static void
s3bd_load (void)
{
  if (mallopt (M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 0)
    nbdkit_debug ("s3bd: mallopt M_MMAP_THRESHOLD failed");
  config_load ();
}

/* nbdkit s3bd --dump-plugin: the release, and the index format it reads,
 * for scripts that check what is installed.
 */
static void
s3bd_dump_plugin (void)
{
  printf ("s3bd_version=%s\n", S3BD_VERSION);
  printf ("s3bd_index_version=%d\n", S3BD_INDEX_VERSION);
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

  params.build.prefix_uri = params.source;
  params.build.time = build_source_date_epoch ();
  if (build_index (s3bd.client, &params.build, &res, err) == -1)
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
  dataset_free (&res.ds); /* before decoding: a lower peak */
  r = index_decode (res.index, res.index_len, &s3bd.idx, err);
  if (r == 0)
    /* At start-up, whatever the verbosity, like the stats at exit: the
     * operator wants to see what is being served.
     */
    fprintf (stderr,
             "nbdkit: s3bd: source %s: %zu objects, %" PRIu64
             " bytes, %zu left out, %" PRIu64 " directories; device %" PRIu64
             " MiB, index %zu bytes; built in %.2f s\n",
             params.source, nfiles, res.bytes, nleft, res.dirs,
             s3bd.idx.device_blocks * s3bd.idx.block_size >> 20, res.index_len,
             s3_now_ms () / 1000.0 - start);
  else
    s3bd_error_prefix (err, "source %s: the index built", params.source);
  build_result_free (&res);
  return r;
}

static int
load_index (struct s3bd_error *err)
{
  if (params.source)
    return build_source (err);
  return index_load (s3bd.client, params.index, &s3bd.idx, err);
}

/* hydrate=: the S3 fetcher goes inside the hydration, which becomes the
 * cache's fetcher.
 */
static int
open_hydrate (struct s3bd_error *err)
{
  struct hydrate_config hc = { 0 };
  struct hydrate_stats hs;

  hc.idx = &s3bd.idx;
  hc.path = params.hydrate;
  hc.state_path = params.hydrate_state;
  hc.inner = s3bd.fetcher;
  hc.fill = params.hydrate_fill;
  hc.fill_requests = params.hydrate_requests;
  hc.fill_budget = params.serve.readahead_budget > params.serve.max_fetch
                       ? params.serve.readahead_budget
                       : params.serve.max_fetch;
  /* Many GETs of a few MiB beat fewer of max-fetch: measured in
   * docs/benchmarks.md (bench-hydrate).
   */
  hc.fill_get_size = params.serve.max_fetch < HYDRATE_FILL_GET
                         ? params.serve.max_fetch
                         : HYDRATE_FILL_GET;
  if (hc.fill_get_size < HYDRATE_UNIT)
    hc.fill_get_size = HYDRATE_UNIT;
  hc.fill_rate = params.hydrate_rate;
  /* An epoch reads the copy itself, with no page cache above it. */
  hc.keep_pages = params.pipe.channel != NULL;
  hc.log = plugin_log;
  hc.verbose = s3bd_debug_verbose;
  s3bd.fetcher = NULL; /* the hydration's now, even if it fails */
  if (hydrate_new (&hc, &s3bd.hydrate, err) == -1)
    return -1;
  s3bd.fetcher = hydrate_fetcher (s3bd.hydrate);
  hydrate_get_stats (s3bd.hydrate, &hs);
  fprintf (stderr,
           "nbdkit: s3bd: hydrate %s: %" PRIu64 " of %" PRIu64
           " bytes there%s\n",
           params.hydrate, hs.present_bytes, hs.total_bytes,
           hs.complete ? " (complete: S3 is not needed)" : "");
  return 0;
}

/* pipe=: the FIFO writers, a second consumer of the serve, checked here
 * and started in after_fork.  Each reader's share of the readahead
 * budget is what it fetches ahead.
 */
static int
open_pipe (struct s3bd_error *err)
{
  struct pipe_config *pc = &params.pipe;

  pc->serve = s3bd.serve;
  pc->idx = &s3bd.idx;
  pc->ahead = params.serve.readahead_budget / pc->readers;
  if (pc->ahead < params.serve.chunk_size)
    pc->ahead = params.serve.chunk_size;
  pc->log = plugin_log;
  pc->verbose = s3bd_debug_verbose;
  return pipe_new (pc, &s3bd.pipe, err);
}

static int
s3bd_get_ready (void)
{
  struct s3bd_error err = { 0 };
  struct fetch_s3_config fc = { 0 };

  /* A line per retry at -D s3bd.verbose=1. */
  params.s3.log = plugin_log;
  params.s3.verbose = s3bd_debug_verbose;
  if (s3_client_new (&params.s3, &s3bd.client, &err) == -1)
    goto fail;
  if (load_index (&err) == -1)
    goto fail;
  fc.client = s3bd.client;
  fc.idx = &s3bd.idx;
  fc.max_requests = params.max_requests;
  fc.verify_max = params.verify_max;
  fc.log = plugin_log;
  fc.verbose = s3bd_debug_verbose;
  if (params.hydrate)
    fc.max_requests += params.hydrate_requests;
  if (fetch_s3_new (&fc, &s3bd.fetcher, &err) == -1)
    goto fail;
  if (params.hydrate && open_hydrate (&err) == -1)
    goto fail;
  /* A complete copy serves everything: S3 may be out of reach. */
  if (params.check && !(s3bd.hydrate && hydrate_complete (s3bd.hydrate))
      && fetch_s3_check (s3bd.client, &s3bd.idx, &err) == -1)
    {
      s3bd_error_prefix (&err, "check (check=false skips it)");
      goto fail;
    }
  params.serve.log = plugin_log;
  params.serve.hydrate = s3bd.hydrate;
  params.serve.verbose = s3bd_debug_verbose;
  if (serve_new (&s3bd.idx, s3bd.fetcher, &params.serve, &s3bd.serve, &err)
      == -1)
    goto fail;
  if (params.pipe.channel && open_pipe (&err) == -1)
    goto fail;
  nbdkit_debug ("s3bd: %s %s: %" PRIu64 " objects, device %" PRIu64
                " bytes; endpoint %s, credentials from %s",
                params.source ? "source" : "index",
                params.source ? params.source : params.index, s3bd.idx.nobjects,
                serve_size (s3bd.serve), s3_client_endpoint (s3bd.client),
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

  if (fetcher_start (s3bd.fetcher, &err) == -1 || stats_start (&err) == -1
      || (s3bd.pipe && pipe_start (s3bd.pipe, &err) == -1))
    {
      nbdkit_error ("%s", err.msg);
      return -1;
    }
  return 0;
}

static void
s3bd_cleanup (void)
{
  /* The writers first: they wait on fetches. */
  pipe_stop (s3bd.pipe);
  if (s3bd.fetcher)
    fetcher_stop (s3bd.fetcher);
  stats_stop ();
}

static void
s3bd_unload (void)
{
  pipe_free (s3bd.pipe);
  serve_free (s3bd.serve);
  fetcher_free (s3bd.fetcher);
  index_free (&s3bd.idx);
  s3_client_free (s3bd.client);
}

/* ---- Export names ---- */

static int
s3bd_list_exports (int readonly, int is_tls, struct nbdkit_exports *exports)
{
  if (params.export_name == NULL)
    return nbdkit_use_default_export (exports); /* "", as before */
  return nbdkit_add_export (exports, params.export_name,
                            params.source ? params.source : params.index);
}

static const char *
s3bd_default_export (int readonly, int is_tls)
{
  /* A client asking for the default export ("") gets the one there is. */
  return params.export_name ? params.export_name : "";
}

/* ---- Per connection ---- */

static void *
s3bd_open (int readonly)
{
  if (params.export_name)
    {
      /* The name the client asked for; "" was already turned into
       * params.export_name by default_export.
       */
      const char *name = nbdkit_export_name ();
      char shown[65];
      size_t i;

      if (name == NULL)
        return NULL;
      if (strcmp (name, params.export_name) != 0)
        {
          /* The client's bytes, cut and with control characters
           * replaced: they must not forge a line of the log.
           */
          for (i = 0; name[i] && i < sizeof shown - 1; i++)
            shown[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7f
                           ? '?'
                           : name[i];
          shown[i] = '\0';
          nbdkit_error ("export '%s%s' not found: this server serves '%s' "
                        "only",
                        shown, name[i] ? "..." : "", params.export_name);
          return NULL;
        }
    }
  /* Everything is shared; the handle only has to be non-NULL. */
  return &s3bd;
}

static int64_t
s3bd_get_size (void *handle)
{
  return (int64_t)serve_size (s3bd.serve);
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
  /* Any byte range is served; the file system's block is the natural
   * unit (a power of two from 512 to 64 KiB: index_check_header), and the
   * maximum is a multiple of both.
   */
  *minimum = 1;
  *preferred = s3bd.idx.block_size;
  *maximum = MAX_REQUEST;
  return 0;
}

/* A request over the advertised maximum: refused, never served (it would
 * take the memory past its bound), and said once, where it happens.
 */
static int
too_large (const char *what, uint32_t count, uint64_t offset)
{
  if (count <= MAX_REQUEST)
    return 0;
  nbdkit_error ("%s of %" PRIu32 " bytes at %" PRIu64
                ": over the maximum block size of %u bytes; the client must "
                "split it (for a kernel nbd device: max_sectors_kb=%u, which "
                "s3bd-attach sets)",
                what, count, offset, MAX_REQUEST, MAX_REQUEST >> 10);
  nbdkit_set_error (EINVAL);
  return -1;
}

/* nbdkit has allocated and cleared the buffer of a read before the plugin
 * sees it, up to 64 MiB, and keeps it for its thread until the connection
 * closes: a client ignoring the maximum would hold that much per thread
 * (docs/benchmarks.md, "Memory under load").  The read is refused, so nothing
 * is sent from the buffer: its whole pages go back to the kernel
 * (MADV_DONTNEED; they read as zeros if touched again), and the memory is taken
 * only while nbdkit clears it.
 */
static void
give_back (void *buf, uint32_t count)
{
  uintptr_t page = (uintptr_t)sysconf (_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)buf + page - 1) & ~(page - 1);
  uintptr_t hi = ((uintptr_t)buf + count) & ~(page - 1);

  /* A failure (memory locked with mlockall) costs memory, not bytes. */
  if (hi > lo && madvise ((void *)lo, hi - lo, MADV_DONTNEED) == -1)
    nbdkit_debug ("s3bd: madvise MADV_DONTNEED: %m");
}

/* ---- Reads ---- */

static int
s3bd_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct s3bd_error err = { 0 };

  if (too_large ("read", count, offset) == -1)
    {
      give_back (buf, count);
      return -1;
    }
  if (serve_read (s3bd.serve, buf, count, offset, &err) == -1)
    {
      /* The fetch that failed was logged once, where it failed; this
       * read only reports it to the client.
       */
      if (s3bd_debug_verbose)
        nbdkit_debug ("s3bd: read %" PRIu64 "+%" PRIu32 ": %s", offset, count,
                      err.msg);
      nbdkit_set_error (EIO);
      return -1;
    }
  return 0;
}

static int
s3bd_cache (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (too_large ("cache request", count, offset) == -1)
    return -1;
  serve_prefetch (s3bd.serve, offset, count);
  return 0;
}

static int
add_extent (void *arg, uint64_t offset, uint64_t len, bool hole)
{
  return nbdkit_add_extent (arg, offset, len,
                            hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0);
}

static int
s3bd_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  return map_extents (&s3bd.idx, offset, count, add_extent, extents);
}

static struct nbdkit_plugin plugin = {
  .name = "s3bd",
  .longname = "s3bd: an S3 dataset as a read-only ext4 block device",
  .version = S3BD_VERSION,
  .load = s3bd_load,
  .dump_plugin = s3bd_dump_plugin,
  .config = s3bd_config,
  .config_complete = s3bd_config_complete,
  .config_help = s3bd_config_help_text,
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
