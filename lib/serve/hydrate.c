/* s3bd: hydration.  See hydrate.h.
 *
 * How it works
 *
 * The copy is addressed like the device: object o's byte x is at device
 * byte first_block * block_size + x.  Which units are present is a bitmap
 * of atomic words, set by the writer after the bytes are written and read
 * without a lock by serve's reads, so a unit seen set is a unit whose
 * bytes a pread will find.
 *
 * Threads:
 * - the writer takes write jobs off a queue: the bytes of a finished GET
 *   (the cache's, whose buffers it must write before the cache gets them
 *   back, or the fill's), writes them where they belong and marks their
 *   units;
 * - the syncer, once a second: snapshot of the bitmap, fdatasync of the
 *   copy, then the snapshot into the state file (file_replace); it also
 *   notices completion, and drops the copy's pages from the page cache;
 * - the filler: the metadata blocks first, then every unit not present, in
 *   object order (which is device order), in runs of up to fill_get_size
 *   bytes of one object, with at most fill_requests GETs and fill_budget
 *   bytes in flight, and fewer while the cache is fetching (a read of a
 *   missing range must not wait behind the fill).
 *
 * Stopping (ops.stop): the filler stops sending and waits for its GETs,
 * then the inner fetcher stops (its GETs end and are written), then the
 * writer drains its queue, then the syncer syncs a last time.
 *
 * Lock: h->lock guards the write queue, the fill's in-flight counts and
 * the flags beside them; the bitmap and counters are atomics.  No lock is
 * held across I/O or a call of the inner fetcher.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/evp.h>

#include "common/file.h"
#include "s3bd/hydrate.h"
#include "s3bd/s3.h"

#define STATE_MAGIC "S3BDHYD"
#define STATE_VERSION 1
#define STATE_HEADER 72
#define STATE_META_WRITTEN 1u

/* How often the state is written, and the fill's patience. */
#define SYNC_INTERVAL_MS 1000
/* A demand fetch this recent throttles the fill. */
#define DEMAND_QUIET_MS 200
/* Passes of the fill at most: the first, and two for objects the
 * verifier found wrong.
 */
#define FILL_PASSES 3
/* The fill gives up after this many failed GETs in a row. */
#define FILL_MAX_FAILURES 32

static const unsigned char zeros[65536];

struct wjob
{
  struct wjob *next;
  uint64_t object, off, len; /* object bytes */
  const struct iovec *iov;
  int iovcnt;
  void (*done) (struct wjob *j, bool ok);
};

struct hydrate
{
  struct fetcher base; /* first: the cache's pointer is ours */
  struct hydrate_config cfg;
  const struct s3bd_index *idx;
  unsigned char digest[S3BD_DIGEST_LEN]; /* index_digest, once */
  char *path, *state_path;
  char *pshow, *sshow; /* as messages name them: "hydrate=PATH" */
  int fd;
  bool blockdev;

  /* Units: object o's are unit_base[o] .. unit_base[o + 1] - 1. */
  uint64_t *unit_base;
  uint64_t nunits, nwords;
  _Atomic uint64_t *bits;
  atomic_bool meta_written;
  uint64_t meta_bytes, data_bytes;
  atomic_uint_fast64_t present_data; /* object bytes present */
  atomic_uint_fast64_t gen;          /* bumped by every change to persist */

  pthread_mutex_t lock;
  /* protects: queue, writer_stop, fill_*, sync_stop, fill_finished */
  pthread_cond_t writer_cond, fill_cond, sync_cond;
  struct wjob *head, *tail;
  bool writer_stop, sync_stop, fill_finished;
  unsigned fill_inflight;
  uint64_t fill_inflight_bytes;
  unsigned fill_failures_in_row;
  struct s3bd_error fill_last_error;

  /* The verifier: objects fetched in several GETs, checked once complete
   * against their ETag's MD5 by reading them back.
   */
  _Atomic uint32_t *units_done; /* per object: its units present */
  struct vjob *vhead, *vtail;   /* under lock */
  bool verifier_stop;           /* under lock */
  unsigned verify_pending;      /* under lock: queued or being checked */
  pthread_cond_t verify_cond;
  atomic_bool *not_md5;             /* per bucket: its ETags are not MD5s */
  unsigned char *bad_md5;           /* 16 per object, once one did not match */
  atomic_uint_fast64_t invalidated; /* objects found wrong and cleared */
  atomic_uint_fast64_t verified_objects, verify_mismatches;

  bool started, threads_started[4];
  pthread_t writer, syncer, filler, verifier;
  atomic_bool fill_stop;
  atomic_bool complete, broken;
  atomic_uint_fast64_t last_demand_ms;
  uint64_t synced_gen; /* the syncer's */
  uint64_t fill_sent;  /* the filler's: bytes asked for */

  /* Counters. */
  atomic_uint_fast64_t demand_gets, fill_gets, fill_bytes, fill_failures;
  atomic_uint_fast64_t local_reads, local_bytes, write_errors;
  atomic_uint_fast64_t fill_start_ms, fill_end_ms;
};

static const struct fetch_ops hydrate_ops;

struct vjob
{
  struct vjob *next;
  uint64_t object;
};

static void queue_verify (struct hydrate *h, uint64_t object);

/* ---- Units ---- */

static uint64_t
unit_len (const struct hydrate *h, uint64_t object, uint64_t u)
{
  uint64_t size = h->idx->objects[object].size;
  uint64_t start = u << HYDRATE_UNIT_SHIFT;

  return size - start < HYDRATE_UNIT ? size - start : HYDRATE_UNIT;
}

static bool
unit_present (const struct hydrate *h, uint64_t object, uint64_t u)
{
  uint64_t n = h->unit_base[object] + u;

  return (atomic_load_explicit (&h->bits[n / 64], memory_order_acquire)
          >> (n % 64))
         & 1;
}

/* Marks the units of the object that [off, off + len) covers whole. */
static void
mark_written (struct hydrate *h, uint64_t object, uint64_t off, uint64_t len)
{
  uint64_t size = h->idx->objects[object].size;
  uint64_t first = (off + HYDRATE_UNIT - 1) >> HYDRATE_UNIT_SHIFT;
  uint64_t end = off + len == size
                     ? (size + HYDRATE_UNIT - 1) >> HYDRATE_UNIT_SHIFT
                     : (off + len) >> HYDRATE_UNIT_SHIFT;
  uint32_t added = 0;

  for (uint64_t u = first; u < end; u++)
    {
      uint64_t n = h->unit_base[object] + u;
      uint64_t bit = 1ULL << (n % 64);

      if (!(atomic_fetch_or_explicit (&h->bits[n / 64], bit,
                                      memory_order_release)
            & bit))
        {
          atomic_fetch_add (&h->present_data, unit_len (h, object, u));
          added++;
        }
    }
  if (added == 0)
    return;
  atomic_fetch_add (&h->gen, 1);
  if (atomic_fetch_add (&h->units_done[object], added) + added
      == h->unit_base[object + 1] - h->unit_base[object])
    queue_verify (h, object);
}

static uint64_t
device_offset (const struct hydrate *h, uint64_t object, uint64_t off)
{
  return h->idx->objects[object].first_block * h->idx->block_size + off;
}

/* ---- The state file ---- */

static void
put_le (unsigned char *p, uint64_t v, int n)
{
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le (const unsigned char *p, int n)
{
  uint64_t v = 0;

  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static size_t
state_size (const struct hydrate *h)
{
  return STATE_HEADER + (size_t)((h->nunits + 7) / 8) + 4;
}

static uint64_t
device_size (const struct hydrate *h)
{
  return h->idx->device_blocks * h->idx->block_size;
}

/* The state file's bytes for bitmap words w and the metadata flag. */
static void
state_encode (const struct hydrate *h, const uint64_t *w, bool meta,
              unsigned char *out)
{
  size_t n = state_size (h);
  uint32_t crc;

  memset (out, 0, n);
  memcpy (out, STATE_MAGIC, 8);
  put_le (out + 8, STATE_VERSION, 4);
  put_le (out + 12, HYDRATE_UNIT_SHIFT, 4);
  memcpy (out + 16, h->digest, sizeof h->digest);
  put_le (out + 48, device_size (h), 8);
  put_le (out + 56, h->nunits, 8);
  put_le (out + 64, meta ? STATE_META_WRITTEN : 0, 4);
  for (uint64_t u = 0; u < h->nunits; u++)
    if ((w[u / 64] >> (u % 64)) & 1)
      out[STATE_HEADER + u / 8] |= (unsigned char)(1u << (u % 8));
  crc = (uint32_t)crc32 (0, out, (uInt)(n - 4));
  put_le (out + n - 4, crc, 4);
}

static const char remedy[] = "remove both it and the copy to start over";

/* Reads and checks the state file into h->bits.  1 when there is none,
 * 0 when loaded, -1 with err set when it is unusable.
 */
static int
state_load (struct hydrate *h, struct s3bd_error *err)
{
  size_t n = state_size (h);
  unsigned char *buf;
  struct stat st;
  uint32_t flags;
  int fd, r = -1;

  fd = open (h->state_path, O_RDONLY | O_CLOEXEC);
  if (fd == -1 && errno == ENOENT)
    return 1;
  if (fd == -1)
    return s3bd_fail (err, S3BD_EIO, "%s: %s", h->sshow, strerror (errno));
  buf = malloc (n);
  if (buf == NULL)
    {
      close (fd);
      return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
    }
  if (fstat (fd, &st) == -1)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", h->sshow, strerror (errno));
      goto out;
    }
  if ((uint64_t)st.st_size >= 16 && file_pread_all (fd, buf, 16, 0) == 0
      && memcmp (buf, STATE_MAGIC, 8) == 0
      && get_le (buf + 8, 4) != STATE_VERSION)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "%s: version %" PRIu64 " is not one this s3bd reads (%d); %s",
                 h->sshow, get_le (buf + 8, 4), STATE_VERSION, remedy);
      goto out;
    }
  if ((uint64_t)st.st_size < STATE_HEADER + 4)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "%s: truncated (%jd bytes): not a hydration "
                 "state, or corrupt; %s",
                 h->sshow, (intmax_t)st.st_size, remedy);
      goto out;
    }
  if (file_pread_all (fd, buf, STATE_HEADER, 0) == -1)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", h->sshow, strerror (errno));
      goto out;
    }
  if (memcmp (buf, STATE_MAGIC, 8) != 0)
    {
      s3bd_fail (err, S3BD_EINVAL, "%s: not a hydration state (bad magic); %s",
                 h->sshow, remedy);
      goto out;
    }
  if (memcmp (buf + 16, h->digest, sizeof h->digest) != 0)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "%s was made for another image (another index "
                 "or another version of the dataset): the bytes on %s are not "
                 "this index's; %s, or name another copy",
                 h->sshow, h->path, remedy);
      goto out;
    }
  if ((uint64_t)st.st_size != n || get_le (buf + 12, 4) != HYDRATE_UNIT_SHIFT
      || get_le (buf + 48, 8) != device_size (h)
      || get_le (buf + 56, 8) != h->nunits)
    {
      s3bd_fail (err, S3BD_EINVAL,
                 "%s: %jd bytes for %" PRIu64
                 " units, where this image needs %zu for %" PRIu64
                 " (truncated or corrupt); %s",
                 h->sshow, (intmax_t)st.st_size, get_le (buf + 56, 8), n,
                 h->nunits, remedy);
      goto out;
    }
  if (file_pread_all (fd, buf, n, 0) == -1)
    {
      s3bd_fail (err, S3BD_EIO, "%s: %s", h->sshow, strerror (errno));
      goto out;
    }
  if ((uint32_t)crc32 (0, buf, (uInt)(n - 4)) != get_le (buf + n - 4, 4))
    {
      s3bd_fail (err, S3BD_EINVAL, "%s: checksum mismatch (corrupt); %s",
                 h->sshow, remedy);
      goto out;
    }
  flags = (uint32_t)get_le (buf + 64, 4);
  atomic_store (&h->meta_written, (flags & STATE_META_WRITTEN) != 0);
  for (uint64_t u = 0; u < h->nunits; u++)
    if ((buf[STATE_HEADER + u / 8] >> (u % 8)) & 1)
      atomic_fetch_or (&h->bits[u / 64], 1ULL << (u % 64));
  r = 0;

out:
  free (buf);
  close (fd);
  return r;
}

static int
state_write (struct hydrate *h, const uint64_t *w, bool meta,
             struct s3bd_error *err)
{
  size_t n = state_size (h);
  unsigned char *buf = malloc (n);
  int r;

  if (buf == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  state_encode (h, w, meta, buf);
  r = file_replace ("hydration state", h->state_path, buf, n, 0644, err);
  free (buf);
  return r;
}

/* Recounts present_data from the bitmap (after loading the state). */
static void
count_present (struct hydrate *h)
{
  uint64_t sum = 0;

  for (uint64_t o = 0; o < h->idx->nobjects; o++)
    for (uint64_t u = 0; u < h->unit_base[o + 1] - h->unit_base[o]; u++)
      if (unit_present (h, o, u))
        {
          sum += unit_len (h, o, u);
          atomic_fetch_add (&h->units_done[o], 1);
        }
  atomic_store (&h->present_data, sum);
}

static bool
all_present (struct hydrate *h)
{
  return atomic_load (&h->meta_written)
         && atomic_load (&h->present_data) == h->data_bytes;
}

/* ---- Opening ---- */

static int
open_copy (struct hydrate *h, bool *created, struct s3bd_error *err)
{
  uint64_t need = device_size (h);
  struct stat st;
  int r;

  *created = false;
  if (stat (h->path, &st) == -1)
    {
      if (errno != ENOENT)
        return s3bd_fail (err, S3BD_EIO, "%s: %s", h->pshow, strerror (errno));
      if (access (h->state_path, F_OK) == 0)
        return s3bd_fail (err, S3BD_EINVAL,
                          "%s does not exist but its state %s does: "
                          "remove the state to start over",
                          h->pshow, h->state_path);
      *created = true;
      return 0; /* made by hydrate_new once everything else is right */
    }
  if (S_ISBLK (st.st_mode))
    {
      uint64_t size = 0;

      h->blockdev = true;
      if (h->cfg.state_path == NULL)
        return s3bd_fail (err, S3BD_EINVAL,
                          "%s is a block device: name its state file "
                          "with %s (on another file system)",
                          h->pshow, h->cfg.state_opt);
      /* O_EXCL on a block device: EBUSY while it is mounted or held. */
      h->fd = open (h->path, O_RDWR | O_EXCL | O_CLOEXEC);
      if (h->fd == -1)
        return s3bd_fail (err, errno == EBUSY ? S3BD_EINVAL : S3BD_EIO,
                          "%s: %s", h->pshow,
                          errno == EBUSY ? "the device is mounted or in use"
                                         : strerror (errno));
      if (ioctl (h->fd, BLKGETSIZE64, &size) == -1)
        return s3bd_fail (err, S3BD_EIO, "%s: size: %s", h->pshow,
                          strerror (errno));
      if (size < need)
        return s3bd_fail (err, S3BD_EINVAL,
                          "%s: the device holds %" PRIu64
                          " bytes; the image needs %" PRIu64,
                          h->pshow, size, need);
      return 0;
    }
  if (!S_ISREG (st.st_mode))
    return s3bd_fail (err, S3BD_EINVAL,
                      "%s: neither a regular file nor a block device",
                      h->pshow);
  h->fd = open (h->path, O_RDWR | O_CLOEXEC);
  if (h->fd == -1)
    return s3bd_fail (err, S3BD_EIO, "%s: %s", h->pshow, strerror (errno));
  if (flock (h->fd, LOCK_EX | LOCK_NB) == -1)
    return s3bd_fail (err, S3BD_EINVAL, "%s: in use by another s3bd (%s)",
                      h->pshow, strerror (errno));
  r = access (h->state_path, F_OK);
  if (r == -1 && st.st_size > 0)
    return s3bd_fail (err, S3BD_EINVAL,
                      "%s exists and has no hydration state (%s): it "
                      "is not a copy s3bd made; remove it or name another",
                      h->pshow, h->state_path);
  /* Its size is checked once its state is known to be this image's. */
  *created = st.st_size == 0;
  return 0;
}

/* A copy in a file must be exactly the device's size. */
static int
check_file_size (struct hydrate *h, struct s3bd_error *err)
{
  struct stat st;

  if (h->blockdev)
    return 0;
  if (fstat (h->fd, &st) == -1)
    return s3bd_fail (err, S3BD_EIO, "%s: %s", h->pshow, strerror (errno));
  if ((uint64_t)st.st_size != device_size (h))
    return s3bd_fail (err, S3BD_EINVAL,
                      "%s holds %jd bytes where the image has %" PRIu64
                      " (truncated?); %s",
                      h->pshow, (intmax_t)st.st_size, device_size (h), remedy);
  return 0;
}

/* A new copy: the file (unless it is there, empty, or a device), its
 * first state, its size.  In that order: a crash between leaves an empty file,
 * which is taken as new again.
 */
static int
create_copy (struct hydrate *h, struct s3bd_error *err)
{
  uint64_t *none;
  int r;

  if (h->fd == -1)
    {
      h->fd = open (h->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (h->fd == -1)
        return s3bd_fail (err, S3BD_EIO, "%s: creating it: %s", h->pshow,
                          strerror (errno));
      if (flock (h->fd, LOCK_EX | LOCK_NB) == -1)
        return s3bd_fail (err, S3BD_EINVAL, "%s: in use by another s3bd (%s)",
                          h->pshow, strerror (errno));
    }
  none = calloc (h->nwords ? h->nwords : 1, sizeof *none);
  if (none == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  r = state_write (h, none, false, err);
  free (none);
  if (r == -1)
    return -1;
  if (!h->blockdev && ftruncate (h->fd, (off_t)device_size (h)) == -1)
    return s3bd_fail (err, S3BD_EIO, "%s: sizing it to %" PRIu64 " bytes: %s",
                      h->pshow, device_size (h), strerror (errno));
  return 0;
}

int
hydrate_new (const struct hydrate_config *cfg, struct hydrate **out,
             struct s3bd_error *err)
{
  const struct s3bd_index *idx = cfg->idx;
  struct hydrate *h;
  bool created = false;
  int r;

  *out = NULL;
  if (idx == NULL || cfg->path == NULL || cfg->inner == NULL
      || cfg->fill_requests == 0 || cfg->fill_get_size < HYDRATE_UNIT)
    {
      fetcher_free (cfg->inner);
      return s3bd_fail (err, S3BD_EINVAL, "hydrate: bad configuration");
    }
  h = calloc (1, sizeof *h);
  if (h == NULL)
    {
      fetcher_free (cfg->inner);
      return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
    }
  h->base.ops = &hydrate_ops;
  h->cfg = *cfg;
  h->idx = idx;
  h->fd = -1;
  /* The state is written every second: hash the index (its metadata
   * blocks can be hundreds of MiB) once.
   */
  index_digest (idx, h->digest);
  pthread_mutex_init (&h->lock, NULL);
  pthread_cond_init (&h->writer_cond, NULL);
  pthread_cond_init (&h->fill_cond, NULL);
  pthread_cond_init (&h->sync_cond, NULL);
  pthread_cond_init (&h->verify_cond, NULL);
  h->path = strdup (cfg->path);
  if (cfg->state_path)
    h->state_path = strdup (cfg->state_path);
  else if (asprintf (&h->state_path, "%s.s3bd-state", cfg->path) == -1)
    h->state_path = NULL;
  if (!cfg->path_opt)
    h->cfg.path_opt = "hydrate=";
  if (!cfg->state_opt)
    h->cfg.state_opt = "hydrate-state=PATH";
  if (h->state_path
      && (asprintf (&h->pshow, "%s%s", h->cfg.path_opt, h->path) == -1
          || asprintf (&h->sshow, "%.*s%s",
                       (int)strcspn (h->cfg.state_opt, "P"), h->cfg.state_opt,
                       h->state_path)
                 == -1))
    h->pshow = h->sshow = NULL;
  h->unit_base = malloc ((idx->nobjects + 1) * sizeof *h->unit_base);
  if (h->path == NULL || h->state_path == NULL || h->pshow == NULL
      || h->sshow == NULL || h->unit_base == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto fail;
    }
  h->unit_base[0] = 0;
  for (uint64_t o = 0; o < idx->nobjects; o++)
    {
      uint64_t size = idx->objects[o].size;

      h->unit_base[o + 1]
          = h->unit_base[o] + ((size + HYDRATE_UNIT - 1) >> HYDRATE_UNIT_SHIFT);
      h->data_bytes += size;
    }
  for (uint64_t i = 0; i < idx->nruns; i++)
    h->meta_bytes += (uint64_t)idx->runs[i].count * idx->block_size;
  h->nunits = h->unit_base[idx->nobjects];
  h->nwords = (h->nunits + 63) / 64;
  h->bits = calloc (h->nwords ? h->nwords : 1, sizeof *h->bits);
  h->units_done = calloc (idx->nobjects + 1, sizeof *h->units_done);
  h->not_md5 = calloc (idx->nbuckets + 1, sizeof *h->not_md5);
  if (h->bits == NULL || h->units_done == NULL || h->not_md5 == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto fail;
    }

  if (open_copy (h, &created, err) == -1)
    goto fail;
  r = created ? 1 : state_load (h, err);
  if (r == -1)
    goto fail;
  if (r == 1 && create_copy (h, err) == -1)
    goto fail;
  if (r == 0 && check_file_size (h, err) == -1)
    goto fail;
  count_present (h);
  atomic_store (&h->complete, all_present (h));
  *out = h;
  return 0;

fail:
  h->started = false;
  hydrate_fetcher (h)->ops->free (hydrate_fetcher (h));
  return -1;
}

struct fetcher *
hydrate_fetcher (struct hydrate *h)
{
  return &h->base;
}

bool
hydrate_complete (struct hydrate *h)
{
  return atomic_load (&h->complete);
}

/* ---- The writer ---- */

static void
queue_write (struct hydrate *h, struct wjob *j)
{
  j->next = NULL;
  pthread_mutex_lock (&h->lock);
  if (h->tail)
    h->tail->next = j;
  else
    h->head = j;
  h->tail = j;
  pthread_cond_signal (&h->writer_cond);
  pthread_mutex_unlock (&h->lock);
}

/* Writes a job's bytes, and the zeros after an object's last byte up to
 * its block's end (a used block device holds anything there).
 */
static bool
write_job (struct hydrate *h, struct wjob *j)
{
  const struct index_object *o = &h->idx->objects[j->object];
  uint64_t bs = h->idx->block_size;
  uint64_t at = device_offset (h, j->object, j->off);
  int e = 0;

  if (atomic_load (&h->broken))
    return false;
  if (file_pwritev_all (h->fd, j->iov, j->iovcnt, at) == -1)
    e = errno;
  else if (j->off + j->len == o->size && o->size % bs
           && file_pwrite_all (h->fd, zeros, (size_t)(bs - o->size % bs),
                               at + j->len)
                  == -1)
    e = errno;
  if (e)
    {
      atomic_fetch_add (&h->write_errors, 1);
      if (!atomic_exchange (&h->broken, true))
        s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
                   "s3bd: hydrate: writing %s at %" PRIu64 ": %s; hydration "
                   "stops, reads go on from S3",
                   h->path, at, strerror (e));
      atomic_store (&h->fill_stop, true);
      return false;
    }
  mark_written (h, j->object, j->off, j->len);
  return true;
}

static void *
writer_main (void *arg)
{
  struct hydrate *h = arg;

  pthread_mutex_lock (&h->lock);
  for (;;)
    {
      struct wjob *j = h->head;

      if (j == NULL)
        {
          if (h->writer_stop)
            break;
          pthread_cond_wait (&h->writer_cond, &h->lock);
          continue;
        }
      h->head = j->next;
      if (h->head == NULL)
        h->tail = NULL;
      pthread_mutex_unlock (&h->lock);
      j->done (j, write_job (h, j));
      pthread_mutex_lock (&h->lock);
    }
  pthread_mutex_unlock (&h->lock);
  return NULL;
}

/* ---- The syncer ---- */

static void
do_sync (struct hydrate *h)
{
  uint64_t g = atomic_load (&h->gen);
  bool meta;
  uint64_t *w;
  struct s3bd_error err = { 0 };

  if (g == h->synced_gen)
    return;
  w = malloc ((h->nwords ? h->nwords : 1) * sizeof *w);
  if (w == NULL)
    return; /* next time */
  /* The snapshot first: every unit in it was written before the
   * fdatasync below starts, so it is durable when that returns.
   */
  meta = atomic_load (&h->meta_written);
  for (uint64_t i = 0; i < h->nwords; i++)
    w[i] = atomic_load_explicit (&h->bits[i], memory_order_acquire);
  if (fdatasync (h->fd) == -1)
    {
      s3bd_logf (h->cfg.log, S3BD_LOG_ERROR, "s3bd: hydrate: syncing %s: %s",
                 h->path, strerror (errno));
      free (w);
      return;
    }
  if (state_write (h, w, meta, &err) == -1)
    {
      s3bd_logf (h->cfg.log, S3BD_LOG_ERROR, "s3bd: hydrate: %s", err.msg);
      free (w);
      return;
    }
  free (w);
  h->synced_gen = g;
  if (!atomic_load (&h->complete) && all_present (h))
    {
      /* all_present may have become true after the snapshot: complete
       * only once the state says so.
       */
      if (atomic_load (&h->gen) == g)
        {
          atomic_store (&h->complete, true);
          s3bd_logf (h->cfg.log, S3BD_LOG_INFO,
                     "s3bd: hydration complete: all %" PRIu64
                     " bytes of the image are on %s; S3 is no longer needed",
                     h->meta_bytes + h->data_bytes, h->path);
        }
    }
}

static void *
syncer_main (void *arg)
{
  struct hydrate *h = arg;

  pthread_mutex_lock (&h->lock);
  while (!h->sync_stop)
    {
      struct timespec ts;

      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_sec += SYNC_INTERVAL_MS / 1000;
      pthread_cond_timedwait (&h->sync_cond, &h->lock, &ts);
      pthread_mutex_unlock (&h->lock);
      do_sync (h);
      /* The copy's pages are clean after the sync, and the reader's own
       * page cache (above the device) holds what it reads: dropping them
       * keeps the data from sitting twice in memory.  Per read, right
       * after the pread, the kernel drops nothing (the pages are still
       * in its per-CPU batches); once a second over the whole file, it
       * drops them all.  Unless a Pipe export reads the copy: it has no
       * cache of its own (keep_pages).
       */
      if (!h->cfg.keep_pages)
        posix_fadvise (h->fd, 0, 0, POSIX_FADV_DONTNEED);
      pthread_mutex_lock (&h->lock);
    }
  pthread_mutex_unlock (&h->lock);
  do_sync (h);
  return NULL;
}

/* ---- The verifier ----
 *
 * An object the fill fetches in one GET is checked by the S3 backend
 * (fetch_req.verify).  One larger than a fill GET is checked here once
 * all its units are in: read back from the copy, its MD5 against its
 * ETag's.  A mismatch clears the object's units, so the next fill pass
 * fetches it again; the same wrong digest twice means the ETag is not an
 * MD5 of the bytes (SSE-KMS, SSE-C), and the bucket is not checked again.
 */

static void
queue_verify (struct hydrate *h, uint64_t object)
{
  const struct index_object *o = &h->idx->objects[object];
  unsigned char md5[16];
  struct vjob *v;

  if (o->size <= h->cfg.fill_get_size || !index_etag_md5 (o->etag, md5)
      || atomic_load (&h->not_md5[o->bucket]))
    return;
  v = calloc (1, sizeof *v);
  if (v == NULL)
    return; /* unchecked, as a copy made before a crash is */
  v->object = object;
  pthread_mutex_lock (&h->lock);
  if (h->vtail)
    h->vtail->next = v;
  else
    h->vhead = v;
  h->vtail = v;
  h->verify_pending++;
  pthread_cond_broadcast (&h->verify_cond);
  pthread_mutex_unlock (&h->lock);
}

/* Clears the object's units: the next fill pass fetches it again. */
static void
invalidate (struct hydrate *h, uint64_t object)
{
  uint64_t n = h->unit_base[object + 1] - h->unit_base[object];

  for (uint64_t u = 0; u < n; u++)
    {
      uint64_t k = h->unit_base[object] + u;
      uint64_t bit = 1ULL << (k % 64);

      if (atomic_fetch_and (&h->bits[k / 64], ~bit) & bit)
        atomic_fetch_sub (&h->present_data, unit_len (h, object, u));
    }
  atomic_store (&h->units_done[object], 0);
  atomic_fetch_add (&h->gen, 1);
  atomic_fetch_add (&h->invalidated, 1);
}

static void
verify_object (struct hydrate *h, uint64_t object, unsigned char *buf,
               size_t bufsize)
{
  const struct index_object *o = &h->idx->objects[object];
  const char *bucket = h->idx->buckets[o->bucket];
  unsigned char want[16], got[16];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned len = 0;

  if (ctx == NULL || EVP_DigestInit_ex (ctx, EVP_md5 (), NULL) != 1)
    abort ();
  index_etag_md5 (o->etag, want);
  for (uint64_t off = 0; off < o->size; off += bufsize)
    {
      size_t n = o->size - off < bufsize ? (size_t)(o->size - off) : bufsize;

      if (file_pread_all (h->fd, buf, n, device_offset (h, object, off)) == -1)
        {
          s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
                     "s3bd: hydrate: reading s3://%s/%s back from %s: %s; "
                     "not checked",
                     bucket, o->key, h->path, strerror (errno));
          EVP_MD_CTX_free (ctx);
          return;
        }
      EVP_DigestUpdate (ctx, buf, n);
    }
  EVP_DigestFinal_ex (ctx, got, &len);
  EVP_MD_CTX_free (ctx);
  if (memcmp (want, got, 16) == 0)
    {
      atomic_fetch_add (&h->verified_objects, 1);
      return;
    }
  atomic_fetch_add (&h->verify_mismatches, 1);
  if (h->bad_md5 == NULL)
    h->bad_md5 = calloc (h->idx->nobjects, 16);
  if (h->bad_md5 && memcmp (h->bad_md5 + 16 * object, got, 16) == 0)
    {
      if (!atomic_exchange (&h->not_md5[o->bucket], true))
        s3bd_logf (h->cfg.log, S3BD_LOG_INFO,
                   "s3bd: hydrate: s3://%s/%s: the same bytes twice, and not "
                   "the MD5 of its ETag: this bucket's ETags are not MD5s "
                   "(SSE-KMS or SSE-C?), its objects are not checked",
                   bucket, o->key);
      return;
    }
  if (h->bad_md5)
    memcpy (h->bad_md5 + 16 * object, got, 16);
  s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
             "s3bd: hydrate: s3://%s/%s: the copy does not match the ETag's "
             "MD5 (corrupted on the way): it is fetched again",
             bucket, o->key);
  invalidate (h, object);
}

static void *
verifier_main (void *arg)
{
  struct hydrate *h = arg;
  size_t bufsize = 1 << 20;
  unsigned char *buf = malloc (bufsize);

  pthread_mutex_lock (&h->lock);
  for (;;)
    {
      struct vjob *v = h->vhead;

      if (v == NULL)
        {
          if (h->verifier_stop)
            break;
          pthread_cond_wait (&h->verify_cond, &h->lock);
          continue;
        }
      h->vhead = v->next;
      if (h->vhead == NULL)
        h->vtail = NULL;
      pthread_mutex_unlock (&h->lock);
      if (buf)
        verify_object (h, v->object, buf, bufsize);
      free (v);
      pthread_mutex_lock (&h->lock);
      h->verify_pending--;
      pthread_cond_broadcast (&h->verify_cond);
    }
  pthread_mutex_unlock (&h->lock);
  free (buf);
  return NULL;
}

/* ---- The fill ---- */

struct ffetch
{
  struct fetch_req req; /* first */
  struct wjob job;
  struct iovec iov;
  struct hydrate *h;
};

static void
fill_finish_one (struct hydrate *h, struct ffetch *f, bool ok,
                 const struct s3bd_error *err)
{
  pthread_mutex_lock (&h->lock);
  h->fill_inflight--;
  h->fill_inflight_bytes -= f->req.len;
  if (ok)
    h->fill_failures_in_row = 0;
  else if (err)
    {
      h->fill_failures_in_row++;
      h->fill_last_error = *err;
    }
  pthread_cond_broadcast (&h->fill_cond);
  pthread_mutex_unlock (&h->lock);
  if (ok)
    atomic_fetch_add (&h->fill_bytes, f->req.len);
  else
    atomic_fetch_add (&h->fill_failures, 1);
  free (f->iov.iov_base);
  free (f);
}

static void
fill_written (struct wjob *j, bool ok)
{
  struct ffetch *f
      = (struct ffetch *)((char *)j - offsetof (struct ffetch, job));

  fill_finish_one (f->h, f, ok, NULL);
}

static void
fill_fetched (struct fetch_req *r, const struct s3bd_error *err)
{
  struct ffetch *f = (struct ffetch *)r;

  if (err)
    {
      fill_finish_one (f->h, f, false, err);
      return;
    }
  queue_write (f->h, &f->job);
}

/* How many fill GETs may be in flight now. */
static unsigned
fill_cap (struct hydrate *h)
{
  uint64_t last = atomic_load (&h->last_demand_ms);
  unsigned cap = h->cfg.fill_requests;

  if (last && s3_now_ms () - last < DEMAND_QUIET_MS)
    cap = cap / 8 ? cap / 8 : 1;
  return cap;
}

/* fill_rate: sleeps until the fill may send len more bytes, sent so far
 * since the fill started.  false when stopping.
 */
static bool
fill_pace (struct hydrate *h, uint64_t sent, uint64_t len)
{
  uint64_t start = atomic_load (&h->fill_start_ms);

  if (h->cfg.fill_rate == 0)
    return true;
  while (!atomic_load (&h->fill_stop))
    {
      uint64_t elapsed = s3_now_ms () - start;
      uint64_t allowed = h->cfg.fill_rate * elapsed / 1000;
      uint64_t wait_ms;
      struct timespec ts;

      /* A burst of one GET at the start. */
      if (sent == 0 || sent + len <= allowed + len)
        return true;
      wait_ms = (sent - allowed) * 1000 / h->cfg.fill_rate + 1;
      if (wait_ms > 100)
        wait_ms = 100;
      ts.tv_sec = 0;
      ts.tv_nsec = (long)wait_ms * 1000000L;
      nanosleep (&ts, NULL);
    }
  return false;
}

/* Waits for room, then sends one fill GET.  false when stopping. */
static bool
fill_send (struct hydrate *h, uint64_t object, uint64_t off, uint64_t len)
{
  struct ffetch *f;

  if (!fill_pace (h, h->fill_sent, len))
    return false;
  h->fill_sent += len;
  pthread_mutex_lock (&h->lock);
  while (!atomic_load (&h->fill_stop)
         && (h->fill_inflight >= fill_cap (h)
             || (h->fill_inflight > 0
                 && h->fill_inflight_bytes + len > h->cfg.fill_budget)))
    {
      struct timespec ts;

      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_nsec += 50 * 1000000L;
      if (ts.tv_nsec >= 1000000000L)
        {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000L;
        }
      pthread_cond_timedwait (&h->fill_cond, &h->lock, &ts);
    }
  if (h->fill_failures_in_row >= FILL_MAX_FAILURES
      && !atomic_exchange (&h->fill_stop, true))
    s3bd_logf (
        h->cfg.log, S3BD_LOG_ERROR,
        "s3bd: hydrate: the fill stops after %u failed GETs in a row (the "
        "last: %s); reads still fetch what they need, and a restart "
        "resumes the fill",
        h->fill_failures_in_row, h->fill_last_error.msg);
  if (atomic_load (&h->fill_stop))
    {
      pthread_mutex_unlock (&h->lock);
      return false;
    }
  h->fill_inflight++;
  h->fill_inflight_bytes += len;
  pthread_mutex_unlock (&h->lock);

  f = calloc (1, sizeof *f);
  if (f)
    f->iov.iov_base = malloc (len);
  if (f == NULL || f->iov.iov_base == NULL)
    {
      free (f);
      pthread_mutex_lock (&h->lock);
      h->fill_inflight--;
      h->fill_inflight_bytes -= len;
      h->fill_failures_in_row++;
      s3bd_error_clear (&h->fill_last_error);
      s3bd_fail (&h->fill_last_error, S3BD_ENOMEM,
                 "no memory for a fill GET of %" PRIu64 " bytes", len);
      pthread_mutex_unlock (&h->lock);
      atomic_fetch_add (&h->fill_failures, 1);
      return true;
    }
  f->h = h;
  f->iov.iov_len = len;
  f->req = (struct fetch_req){ .object = object,
                               .off = off,
                               .len = len,
                               .iov = &f->iov,
                               .iovcnt = 1,
                               .done = fill_fetched,
                               .verify = true };
  f->job = (struct wjob){ .object = object,
                          .off = off,
                          .len = len,
                          .iov = &f->iov,
                          .iovcnt = 1,
                          .done = fill_written };
  atomic_fetch_add (&h->fill_gets, 1);
  if (h->cfg.verbose)
    s3bd_logf (h->cfg.log, S3BD_LOG_DEBUG,
               "s3bd: hydrate: fill object %" PRIu64 " bytes %" PRIu64
               "+%" PRIu64,
               object, off, len);
  h->cfg.inner->ops->fetch (h->cfg.inner, &f->req);
  return true;
}

/* The metadata blocks, from the index: runs of repeated blocks as one
 * write of many buffers pointing at the same block.
 */
static int
write_meta (struct hydrate *h)
{
  const struct s3bd_index *idx = h->idx;
  uint64_t bs = idx->block_size;
  struct iovec v[64];

  for (uint64_t i = 0; i < idx->nruns; i++)
    {
      const struct index_meta_run *r = &idx->runs[i];
      const unsigned char *first = idx->content + (uint64_t)r->first * bs;
      uint64_t done = 0;

      while (done < r->count)
        {
          uint64_t n = r->count - done;
          int cnt = 0;

          if (r->repeated)
            {
              while (cnt < 64 && done + (uint64_t)cnt < r->count)
                {
                  v[cnt].iov_base = (void *)first;
                  v[cnt].iov_len = bs;
                  cnt++;
                }
              n = (uint64_t)cnt;
            }
          else
            {
              v[0].iov_base = (void *)(first + done * bs);
              v[0].iov_len = n * bs;
              cnt = 1;
            }
          if (file_pwritev_all (h->fd, v, cnt, (r->block + done) * bs) == -1)
            {
              int e = errno;

              atomic_fetch_add (&h->write_errors, 1);
              atomic_store (&h->broken, true);
              s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
                         "s3bd: hydrate: writing the metadata to %s: %s; "
                         "hydration stops, reads go on from S3",
                         h->path, strerror (e));
              return -1;
            }
          done += n;
        }
    }
  atomic_store (&h->meta_written, true);
  atomic_fetch_add (&h->gen, 1);
  return 0;
}

/* Sends a GET for every unit not present, in device order.  false when
 * stopping.
 */
static bool
fill_pass (struct hydrate *h, uint64_t max_units)
{
  const struct s3bd_index *idx = h->idx;

  for (uint64_t o = 0; o < idx->nobjects; o++)
    {
      uint64_t n = h->unit_base[o + 1] - h->unit_base[o];

      for (uint64_t u = 0; u < n;)
        {
          uint64_t k = 0, off, len;

          if (unit_present (h, o, u))
            {
              u++;
              continue;
            }
          while (u + k < n && k < max_units && !unit_present (h, o, u + k))
            k++;
          off = u << HYDRATE_UNIT_SHIFT;
          len = ((u + k) << HYDRATE_UNIT_SHIFT) < idx->objects[o].size
                    ? k << HYDRATE_UNIT_SHIFT
                    : idx->objects[o].size - off;
          if (!fill_send (h, o, off, len))
            return false;
          u += k;
        }
    }
  return true;
}

static void *
filler_main (void *arg)
{
  struct hydrate *h = arg;
  uint64_t max_units = h->cfg.fill_get_size >> HYDRATE_UNIT_SHIFT;
  bool more = true;

  if (!atomic_load (&h->meta_written) && write_meta (h) == -1)
    more = false;
  /* A pass over everything; again for what the verifier cleared. */
  for (int pass = 0; pass < FILL_PASSES && more && h->cfg.fill; pass++)
    {
      uint64_t before = atomic_load (&h->invalidated);

      more = fill_pass (h, max_units);
      /* Its GETs written and their objects checked. */
      pthread_mutex_lock (&h->lock);
      while (h->fill_inflight > 0 || h->verify_pending > 0)
        pthread_cond_wait (
            h->fill_inflight > 0 ? &h->fill_cond : &h->verify_cond, &h->lock);
      pthread_mutex_unlock (&h->lock);
      if (atomic_load (&h->invalidated) == before)
        break;
    }

  /* Wait for the GETs in flight: their writes end the fill. */
  pthread_mutex_lock (&h->lock);
  while (h->fill_inflight > 0)
    pthread_cond_wait (&h->fill_cond, &h->lock);
  h->fill_finished = true;
  pthread_cond_broadcast (&h->fill_cond);
  pthread_mutex_unlock (&h->lock);
  atomic_store (&h->fill_end_ms, s3_now_ms ());
  if (h->cfg.fill && !atomic_load (&h->fill_stop))
    {
      uint64_t missing = h->data_bytes - atomic_load (&h->present_data);

      if (missing)
        s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
                   "s3bd: hydrate: the fill is done but %" PRIu64
                   " bytes are missing after %" PRIu64
                   " failed GETs (logged above); a restart tries them again",
                   missing, (uint64_t)atomic_load (&h->fill_failures));
    }
  /* Have the syncer record it now rather than in a second. */
  pthread_mutex_lock (&h->lock);
  pthread_cond_signal (&h->sync_cond);
  pthread_mutex_unlock (&h->lock);
  return NULL;
}

bool
hydrate_wait_fill (struct hydrate *h, int timeout_ms)
{
  struct timespec ts;
  bool done;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L)
    {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
  pthread_mutex_lock (&h->lock);
  while (!h->fill_finished)
    if (pthread_cond_timedwait (&h->fill_cond, &h->lock, &ts) == ETIMEDOUT)
      break;
  done = h->fill_finished;
  pthread_mutex_unlock (&h->lock);
  return done;
}

/* ---- The cache's fetches ---- */

struct dfetch
{
  struct fetch_req inner; /* first */
  struct wjob job;
  struct fetch_req *outer;
  struct hydrate *h;
};

static void
demand_written (struct wjob *j, bool ok)
{
  struct dfetch *d
      = (struct dfetch *)((char *)j - offsetof (struct dfetch, job));
  struct fetch_req *outer = d->outer;

  /* The bytes are right whether or not they reached the copy. */
  free (d);
  fetch_req_done (outer, NULL);
}

static void
demand_fetched (struct fetch_req *r, const struct s3bd_error *err)
{
  struct dfetch *d = (struct dfetch *)r;
  struct fetch_req *outer = d->outer;

  if (err || atomic_load (&d->h->broken))
    {
      free (d);
      fetch_req_done (outer, err);
      return;
    }
  queue_write (d->h, &d->job);
}

static bool
range_present (struct hydrate *h, uint64_t object, uint64_t off, uint64_t len)
{
  uint64_t last = (off + len - 1) >> HYDRATE_UNIT_SHIFT;

  for (uint64_t u = off >> HYDRATE_UNIT_SHIFT; u <= last; u++)
    if (!unit_present (h, object, u))
      return false;
  return true;
}

static int
read_local (struct hydrate *h, uint64_t object, uint64_t off, void *buf,
            uint64_t len)
{
  if (file_pread_all (h->fd, buf, (size_t)len, device_offset (h, object, off))
      == -1)
    {
      s3bd_logf (h->cfg.log, S3BD_LOG_ERROR,
                 "s3bd: hydrate: reading %s at %" PRIu64 ": %s; served from S3",
                 h->path, device_offset (h, object, off), strerror (errno));
      return -1;
    }
  atomic_fetch_add (&h->local_reads, 1);
  atomic_fetch_add (&h->local_bytes, len);
  return 0;
}

static void
h_fetch (struct fetcher *base, struct fetch_req *r)
{
  struct hydrate *h = (struct hydrate *)base;
  struct dfetch *d;

  atomic_store (&h->last_demand_ms, s3_now_ms ());
  if (r->len && range_present (h, r->object, r->off, r->len))
    {
      uint64_t off = r->off;
      int i;

      for (i = 0; i < r->iovcnt; i++)
        {
          if (read_local (h, r->object, off, r->iov[i].iov_base,
                          r->iov[i].iov_len)
              == -1)
            break;
          off += r->iov[i].iov_len;
        }
      if (i == r->iovcnt)
        {
          fetch_req_done (r, NULL);
          return;
        }
    }
  d = calloc (1, sizeof *d);
  if (d == NULL)
    {
      struct s3bd_error err = { 0 };

      s3bd_fail (&err, S3BD_ENOMEM, "hydrate: out of memory");
      fetch_req_done (r, &err);
      return;
    }
  d->h = h;
  d->outer = r;
  /* No progress: the buffers go back to the cache only once written. */
  d->inner = (struct fetch_req){ .object = r->object,
                                 .off = r->off,
                                 .len = r->len,
                                 .iov = r->iov,
                                 .iovcnt = r->iovcnt,
                                 .done = demand_fetched };
  d->job = (struct wjob){ .object = r->object,
                          .off = r->off,
                          .len = r->len,
                          .iov = r->iov,
                          .iovcnt = r->iovcnt,
                          .done = demand_written };
  atomic_fetch_add (&h->demand_gets, 1);
  h->cfg.inner->ops->fetch (h->cfg.inner, &d->inner);
}

/* ---- Serve's reads ---- */

/* The run of units from u on (inside [off, end)) that share u's
 * presence: its end, in object bytes.
 */
static uint64_t
run_end (struct hydrate *h, uint64_t object, uint64_t off, uint64_t end,
         bool *present)
{
  uint64_t u = off >> HYDRATE_UNIT_SHIFT;
  uint64_t at;

  *present = unit_present (h, object, u);
  at = (u + 1) << HYDRATE_UNIT_SHIFT;
  while (at < end
         && unit_present (h, object, at >> HYDRATE_UNIT_SHIFT) == *present)
    at += HYDRATE_UNIT;
  return at < end ? at : end;
}

int
hydrate_read (struct hydrate *h, struct cache *c, uint64_t object,
              uint64_t object_size, uint64_t off, uint64_t len, void *buf,
              struct s3bd_error *err)
{
  unsigned char *p = buf;
  uint64_t end = off + len;

  while (off < end)
    {
      bool present;
      uint64_t stop = run_end (h, object, off, end, &present);
      uint64_t n = stop - off;

      if (!present || read_local (h, object, off, p, n) == -1)
        if (cache_read (c, object, object_size, off, n, p, err) == -1)
          return -1;
      p += n;
      off = stop;
    }
  return 0;
}

int
hydrate_locate (struct hydrate *h, uint64_t object, uint64_t off, uint64_t len,
                int *fd, uint64_t *fd_off)
{
  if (len == 0 || !range_present (h, object, off, len))
    return -1;
  *fd = h->fd;
  *fd_off = device_offset (h, object, off);
  return 0;
}

void
hydrate_prefetch (struct hydrate *h, struct cache *c, uint64_t object,
                  uint64_t object_size, uint64_t off, uint64_t len)
{
  uint64_t end = off + len;

  while (off < end)
    {
      bool present;
      uint64_t stop = run_end (h, object, off, end, &present);

      if (!present)
        cache_prefetch (c, object, object_size, off, stop - off);
      off = stop;
    }
}

/* ---- Stats ---- */

void
hydrate_get_stats (struct hydrate *h, struct hydrate_stats *s)
{
  uint64_t start = atomic_load (&h->fill_start_ms);
  uint64_t end = atomic_load (&h->fill_end_ms);

  memset (s, 0, sizeof *s);
  s->total_bytes = h->meta_bytes + h->data_bytes;
  s->present_bytes = atomic_load (&h->present_data)
                     + (atomic_load (&h->meta_written) ? h->meta_bytes : 0);
  s->demand_gets = atomic_load (&h->demand_gets);
  s->fill_gets = atomic_load (&h->fill_gets);
  s->fill_bytes = atomic_load (&h->fill_bytes);
  s->fill_failures = atomic_load (&h->fill_failures);
  s->local_reads = atomic_load (&h->local_reads);
  s->local_bytes = atomic_load (&h->local_bytes);
  s->write_errors = atomic_load (&h->write_errors);
  s->verified = atomic_load (&h->verified_objects);
  s->verify_mismatches = atomic_load (&h->verify_mismatches);
  s->fill_running = start && !end;
  s->fill_ms = start ? (end ? end : s3_now_ms ()) - start : 0;
  s->complete = atomic_load (&h->complete);
}

void
hydrate_stats_line (struct hydrate *h, char *buf, size_t n)
{
  struct hydrate_stats s;
  double rate, pct;
  char eta[32];

  hydrate_get_stats (h, &s);
  rate = s.fill_ms ? s.fill_bytes / (s.fill_ms / 1000.0) : 0;
  pct = s.total_bytes ? 100.0 * s.present_bytes / s.total_bytes : 100;
  if (s.complete)
    snprintf (eta, sizeof eta, "complete");
  else if (s.fill_running && rate > 0)
    snprintf (eta, sizeof eta, "ETA %.0f s",
              (s.total_bytes - s.present_bytes) / rate);
  else
    snprintf (eta, sizeof eta, "%s", s.fill_running ? "ETA -" : "no fill");
  snprintf (buf, n,
            "; hydrate: %" PRIu64 " of %" PRIu64 " bytes (%.1f%%), fill %.1f "
            "MB/s, %s; GETs demand %" PRIu64 ", fill %" PRIu64
            " (failed %" PRIu64 "); local reads %" PRIu64 " (%" PRIu64
            " bytes); read back and checked %" PRIu64 " (mismatched %" PRIu64
            "); write errors %" PRIu64,
            s.present_bytes, s.total_bytes, pct, rate / 1e6, eta, s.demand_gets,
            s.fill_gets, s.fill_failures, s.local_reads, s.local_bytes,
            s.verified, s.verify_mismatches, s.write_errors);
}

/* ---- Fetcher ops ---- */

static int
h_start (struct fetcher *base, struct s3bd_error *err)
{
  struct hydrate *h = (struct hydrate *)base;
  void *(*mains[4]) (void *)
      = { writer_main, syncer_main, filler_main, verifier_main };
  pthread_t *threads[4] = { &h->writer, &h->syncer, &h->filler, &h->verifier };

  if (h->started)
    return 0;
  if (fetcher_start (h->cfg.inner, err) == -1)
    return -1;
  h->started = true;
  /* Before the threads: the stats must not see a fill that has not
   * started as one that is over.
   */
  atomic_store (&h->fill_start_ms, s3_now_ms ());
  for (int i = 0; i < 4; i++)
    {
      int e = pthread_create (threads[i], NULL, mains[i], h);

      if (e)
        return s3bd_fail (err, S3BD_ENOMEM,
                          "hydrate: cannot start a thread: %s", strerror (e));
      h->threads_started[i] = true;
    }
  return 0;
}

static void
h_stop (struct fetcher *base)
{
  struct hydrate *h = (struct hydrate *)base;

  if (!h->started)
    return;
  h->started = false;
  atomic_store (&h->fill_stop, true);
  pthread_mutex_lock (&h->lock);
  pthread_cond_broadcast (&h->fill_cond);
  pthread_mutex_unlock (&h->lock);
  if (h->threads_started[2])
    pthread_join (h->filler, NULL);
  fetcher_stop (h->cfg.inner);
  pthread_mutex_lock (&h->lock);
  h->writer_stop = true;
  pthread_cond_signal (&h->writer_cond);
  pthread_mutex_unlock (&h->lock);
  if (h->threads_started[0])
    pthread_join (h->writer, NULL);
  /* The last writes may have completed objects: check them too. */
  pthread_mutex_lock (&h->lock);
  h->verifier_stop = true;
  pthread_cond_broadcast (&h->verify_cond);
  pthread_mutex_unlock (&h->lock);
  if (h->threads_started[3])
    pthread_join (h->verifier, NULL);
  pthread_mutex_lock (&h->lock);
  h->sync_stop = true;
  pthread_cond_signal (&h->sync_cond);
  pthread_mutex_unlock (&h->lock);
  if (h->threads_started[1])
    pthread_join (h->syncer, NULL);
  memset (h->threads_started, 0, sizeof h->threads_started);
}

static void
h_get_stats (struct fetcher *base, struct fetch_stats *s)
{
  struct hydrate *h = (struct hydrate *)base;

  fetcher_get_stats (h->cfg.inner, s);
}

static void
h_free (struct fetcher *base)
{
  struct hydrate *h = (struct hydrate *)base;

  h_stop (base);
  fetcher_free (h->cfg.inner);
  if (h->fd >= 0)
    close (h->fd);
  pthread_mutex_destroy (&h->lock);
  pthread_cond_destroy (&h->writer_cond);
  pthread_cond_destroy (&h->fill_cond);
  pthread_cond_destroy (&h->sync_cond);
  pthread_cond_destroy (&h->verify_cond);
  while (h->vhead)
    {
      struct vjob *v = h->vhead;

      h->vhead = v->next;
      free (v);
    }
  free (h->units_done);
  free (h->not_md5);
  free (h->bad_md5);
  free (h->bits);
  free (h->unit_base);
  free (h->path);
  free (h->state_path);
  free (h->pshow);
  free (h->sshow);
  free (h);
}

static const struct fetch_ops hydrate_ops = {
  .name = "hydrate",
  .fetch = h_fetch,
  .start = h_start,
  .stop = h_stop,
  .get_stats = h_get_stats,
  .free = h_free,
};
