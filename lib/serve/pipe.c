/* s3bd: Pipe export.  See pipe.h; the user's view is in
 * docs/nbdkit-s3bd-plugin.md, "Pipe mode".
 *
 * A writer thread per reader, for each epoch:
 *   1. its list: the epoch's permutation, cut to this export's shard,
 *      then to this reader's part (pipe_part_of, by bytes);
 *   2. mkfifo, then open(O_WRONLY | O_NONBLOCK) until a reader is there
 *      (ENXIO until then), looking at the stop flag between tries;
 *   3. each object read in pieces of PIECE bytes through
 *      serve_object_read, with a prefetch cursor running ahead in the
 *      list by at most cfg.ahead bytes (and only while the serve's
 *      readahead budget has room); written with poll + non-blocking
 *      write, so that stop is seen while the reader is slow;
 *   4. close and unlink: the reader has read EOF (or went away: EPIPE),
 *      and the next epoch's FIFO is made.
 * A failed read (the object changed since indexing, retries exhausted)
 * or a gzip object that does not inflate closes the FIFO early, with the
 * key logged: the stream ends short, never with wrong bytes; the next
 * epoch goes on (and logs it again when it gets there).
 *
 * RecordIO with gzip needs each record's length before its data: the
 * object is inflated twice, once to count (and to check it), once to
 * send.  Memory per writer: two pieces, an inflate state and the list.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "s3bd/pipe.h"

#define PIECE (1u << 20)
#define PREFETCH_STEP (16u << 20)
#define OPEN_RETRY_MS 20
#define POLL_MS 100

struct epoch_stats
{
  uint64_t epoch;
  uint64_t records;
  uint64_t bytes;
  double seconds;
  const char *end; /* "complete", "closed by the reader", "error" */
};

struct writer
{
  struct pipe *p;
  unsigned reader;
  pthread_t thread;
  bool started;

  /* The writer thread's own.  list: objects (index order numbers), or
   * with records the records of the epoch's lines, in stream order.
   */
  uint64_t *list;
  uint64_t nlist;
  uint64_t *lines; /* with records: the epoch's lines */
  unsigned char *in, *out;
  int fd;
  char path[4096];
  uint64_t pf_i, pf_off; /* next byte to prefetch */
  uint64_t pf_pos;       /* raw bytes of the list prefetched */
  uint64_t rd_pos;       /* raw bytes of the list read */
  uint64_t counted;      /* emit_count's sum */

  /* protects (p->lock): cur, cur_active, last, have_last, epochs_done */
  struct epoch_stats cur, last;
  bool cur_active, have_last;
  uint64_t epochs_done;
};

struct pipe
{
  struct pipe_config cfg; /* read-only after pipe_new */
  char *dir, *channel;
  atomic_bool stopping;
  pthread_mutex_t lock;
  struct writer *w; /* cfg.readers of them */
  /* An index with records (an augmented manifest): its lines, as the
   * units that are shuffled and cut, and their bytes.
   */
  uint64_t nlines;
  uint64_t *line_start; /* nlines + 1: line l is records [start[l],
                           start[l + 1]) */
  uint64_t *line_bytes;
};

/* ---- The documented functions ---- */

#define GOLDEN UINT64_C (0x9E3779B97F4A7C15)

static uint64_t
mix64 (uint64_t z)
{
  z = (z ^ (z >> 30)) * UINT64_C (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static uint64_t
splitmix64_next (uint64_t *state)
{
  *state += GOLDEN;
  return mix64 (*state);
}

void
pipe_permutation (uint64_t n, bool seeded, uint64_t seed, uint64_t epoch,
                  uint64_t *perm)
{
  uint64_t state;

  for (uint64_t i = 0; i < n; i++)
    perm[i] = i;
  if (!seeded || n < 2)
    return;
  /* The stream of epoch e starts from mix64 (seed) XOR e: seeds and
   * epochs both change every draw.  j = next % (i + 1): the bias is
   * below n / 2^64.
   */
  state = mix64 (seed) ^ epoch;
  for (uint64_t i = n - 1; i > 0; i--)
    {
      uint64_t j = splitmix64_next (&state) % (i + 1);
      uint64_t t = perm[i];

      perm[i] = perm[j];
      perm[j] = t;
    }
}

uint32_t
pipe_part_of (uint64_t k, uint64_t n, uint64_t cum, uint64_t size,
              uint64_t total, uint32_t parts)
{
  unsigned __int128 v;

  if (parts <= 1)
    return 0;
  /* The part whose share of the bytes holds the object's midpoint. */
  if (total == 0)
    v = (unsigned __int128)k * parts / n;
  else
    v = ((unsigned __int128)cum * 2 + size) * parts
        / ((unsigned __int128)total * 2);
  return v >= parts ? parts - 1 : (uint32_t)v;
}

/* ---- Lists ---- */

static bool
has_records (const struct pipe *p)
{
  return p->cfg.idx->nrecords > 0;
}

/* The object a list entry sends, or INDEX_RECORD_INLINE. */
static uint64_t
entry_object (const struct pipe *p, uint64_t v)
{
  return has_records (p) ? p->cfg.idx->records[v].object : v;
}

/* The raw bytes a list entry reads from objects (0 for an inline value):
 * what the read-ahead cursor counts.
 */
static uint64_t
entry_size (const struct pipe *p, uint64_t v)
{
  uint64_t o = entry_object (p, v);

  return o == INDEX_RECORD_INLINE ? 0 : p->cfg.idx->objects[o].size;
}

/* The bytes of a unit that is shuffled and cut: an object, or a line
 * (its objects' bytes and its inline values').
 */
static uint64_t
unit_size (const struct pipe *p, uint64_t u)
{
  return has_records (p) ? p->line_bytes[u] : p->cfg.idx->objects[u].size;
}

/* Keeps the units of list[0..*n) that go to `part` of `parts`. */
static void
cut (const struct pipe *p, uint64_t *list, uint64_t *n, uint32_t part,
     uint32_t parts)
{
  uint64_t total = 0, cum = 0, kept = 0;

  if (parts <= 1)
    return;
  for (uint64_t k = 0; k < *n; k++)
    total += unit_size (p, list[k]);
  for (uint64_t k = 0; k < *n; k++)
    {
      uint64_t s = unit_size (p, list[k]);

      if (pipe_part_of (k, *n, cum, s, total, parts) == part)
        list[kept++] = list[k];
      cum += s;
    }
  *n = kept;
}

static void
make_list (struct writer *w, uint64_t epoch)
{
  struct pipe *p = w->p;
  uint64_t n;

  w->pf_i = w->pf_off = w->pf_pos = w->rd_pos = 0;
  if (!has_records (p))
    {
      w->nlist = p->cfg.idx->nobjects;
      pipe_permutation (w->nlist, p->cfg.seeded, p->cfg.seed, epoch, w->list);
      cut (p, w->list, &w->nlist, p->cfg.shard_index, p->cfg.shard_count);
      cut (p, w->list, &w->nlist, w->reader, p->cfg.readers);
      return;
    }
  /* The same, over lines; then each line's records in order. */
  n = p->nlines;
  pipe_permutation (n, p->cfg.seeded, p->cfg.seed, epoch, w->lines);
  cut (p, w->lines, &n, p->cfg.shard_index, p->cfg.shard_count);
  cut (p, w->lines, &n, w->reader, p->cfg.readers);
  w->nlist = 0;
  for (uint64_t k = 0; k < n; k++)
    for (uint64_t r = p->line_start[w->lines[k]];
         r < p->line_start[w->lines[k] + 1]; r++)
      w->list[w->nlist++] = r;
}

/* ---- Reading ahead ---- */

/* Starts fetching the list from the prefetch cursor on, while it is less
 * than cfg.ahead bytes ahead of the reads and the serve has room.
 */
static void
advance (struct writer *w)
{
  struct pipe *p = w->p;

  while (w->pf_i < w->nlist && w->pf_pos < w->rd_pos + p->cfg.ahead
         && serve_ahead_bytes (p->cfg.serve) < p->cfg.ahead * p->cfg.readers)
    {
      uint64_t o = entry_object (p, w->list[w->pf_i]);
      uint64_t size = entry_size (p, w->list[w->pf_i]);
      uint64_t step = size - w->pf_off;

      if (step > PREFETCH_STEP)
        step = PREFETCH_STEP;
      if (step > p->cfg.ahead)
        step = p->cfg.ahead;
      /* Behind the reads (the budget held the cursor back): skip. */
      if (step && w->pf_pos + step > w->rd_pos)
        serve_object_prefetch (p->cfg.serve, o, w->pf_off, step);
      w->pf_off += step;
      w->pf_pos += step;
      if (w->pf_off == size)
        {
          w->pf_i++;
          w->pf_off = 0;
        }
    }
}

/* ---- Writing ---- */

/* Until the FIFO has room: 0, 1 the reader went away, -1 stopping. */
static int
wait_writable (struct writer *w)
{
  for (;;)
    {
      struct pollfd pfd = { w->fd, POLLOUT, 0 };
      int n;

      if (atomic_load (&w->p->stopping))
        return -1;
      n = poll (&pfd, 1, POLL_MS);
      if (n > 0 && (pfd.revents & (POLLERR | POLLHUP)))
        return 1;
      if (n > 0)
        return 0;
    }
}

static void
count_bytes (struct writer *w, uint64_t n)
{
  pthread_mutex_lock (&w->p->lock);
  w->cur.bytes += n;
  pthread_mutex_unlock (&w->p->lock);
}

/* 0 written, 1 the reader went away, -1 stopping. */
static int
write_all (struct writer *w, const void *buf, size_t len)
{
  const unsigned char *b = buf;
  int r;

  while (len)
    {
      ssize_t k = write (w->fd, b, len);

      if (k > 0)
        {
          b += k;
          len -= (size_t)k;
          continue;
        }
      if (k == -1 && errno != EAGAIN && errno != EINTR)
        return 1; /* EPIPE: the reader closed it */
      if ((r = wait_writable (w)) != 0)
        return r;
    }
  count_bytes (w, (uint64_t)(b - (const unsigned char *)buf));
  return 0;
}

/* Moves len bytes of the file fd from fd_off into the FIFO with splice:
 * the page cache's pages go into the pipe, not copied through a buffer
 * (from a hydration's copy: what makes an epoch from it run as fast as
 * reading the file).  0 moved, 1 the reader went away, -1 stopping, -2
 * splice failed (a file system without it, a short file) after *moved
 * bytes: the caller sends the rest another way.
 */
static int
splice_all (struct writer *w, int fd, uint64_t fd_off, uint64_t len,
            uint64_t *moved)
{
  loff_t at = (loff_t)fd_off;
  int r = 0;

  *moved = 0;
  while (*moved < len && r == 0)
    {
      ssize_t k = splice (fd, &at, w->fd, NULL, len - *moved,
                          SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

      if (k > 0)
        *moved += (uint64_t)k;
      else if (k == -1 && errno == EPIPE)
        r = 1;
      else if (k == -1 && (errno == EAGAIN || errno == EINTR))
        r = wait_writable (w);
      else
        r = -2;
    }
  count_bytes (w, *moved);
  return r;
}

/* What reading an object gives the caller: raw or inflated bytes. */
typedef int emit_fn (struct writer *w, const void *buf, size_t len);

static int
emit_write (struct writer *w, const void *buf, size_t len)
{
  return write_all (w, buf, len);
}

static int
emit_count (struct writer *w, const void *buf, size_t len)
{
  (void)buf;
  w->counted += len;
  return 0;
}

/* Reads object list[i] (whose raw bytes start at list position `pos`),
 * giving its bytes to emit, inflated with gzip.  0 done, 1 the reader
 * went away, -1 stopping, -2 a failed read or bad gzip (logged).
 */
static int
stream_object (struct writer *w, uint64_t i, uint64_t pos, emit_fn *emit,
               bool have_first)
{
  struct pipe *p = w->p;
  const struct s3bd_index *idx = p->cfg.idx;
  uint64_t o = entry_object (p, w->list[i]);
  uint64_t size = idx->objects[o].size;
  const struct index_object *obj = &idx->objects[o];
  struct s3bd_error err = { 0 };
  bool gz = p->cfg.compression == PIPE_COMPRESS_GZIP;
  z_stream z = { 0 };
  bool z_end = false;
  int r = 0;

  if (gz && inflateInit2 (&z, 16 + MAX_WBITS) != Z_OK)
    {
      s3bd_logf (p->cfg.log, S3BD_LOG_ERROR, "pipe %s: inflate: out of memory",
                 w->path);
      return -2;
    }
  for (uint64_t off = 0; off < size && r == 0;)
    {
      uint64_t len = size - off < PIECE ? size - off : PIECE;

      if (atomic_load (&p->stopping))
        {
          r = -1;
          break;
        }
      w->rd_pos = pos + off;
      advance (w);
      if (!gz && emit == emit_write && !(off == 0 && have_first))
        {
          int fd;
          uint64_t fd_off, moved;

          if (serve_object_locate (p->cfg.serve, o, off, len, &fd, &fd_off)
              == 0)
            {
              r = splice_all (w, fd, fd_off, len, &moved);
              if (r != -2)
                {
                  off += len;
                  continue;
                }
              /* The rest of the piece through a buffer. */
              r = 0;
              off += moved;
              len -= moved;
            }
        }
      if (off == 0 && have_first)
        ; /* the caller read it */
      else if (serve_object_read (p->cfg.serve, o, off, len, w->in, &err) == -1)
        {
          s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                     "pipe %s: s3://%s/%s: %s; the FIFO is closed early",
                     w->path, idx->buckets[obj->bucket], obj->key, err.msg);
          r = -2;
          break;
        }
      off += len;
      if (!gz)
        {
          r = emit (w, w->in, len);
          continue;
        }
      z.next_in = w->in;
      z.avail_in = (uInt)len;
      do
        {
          int zr;

          if (z_end)
            {
              /* Another gzip member follows (as gunzip reads them). */
              if (z.avail_in == 0)
                break;
              if (inflateReset (&z) != Z_OK)
                {
                  r = -2;
                  break;
                }
              z_end = false;
            }
          z.next_out = w->out;
          z.avail_out = PIECE;
          zr = inflate (&z, Z_NO_FLUSH);
          if (zr == Z_STREAM_END)
            z_end = true;
          else if (zr != Z_OK && zr != Z_BUF_ERROR)
            {
              s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                         "pipe %s: s3://%s/%s: not gzip or corrupt near "
                         "byte %" PRIu64 " (%s); the FIFO is closed early",
                         w->path, idx->buckets[obj->bucket], obj->key,
                         off - z.avail_in, z.msg ? z.msg : "inflate failed");
              r = -2;
              break;
            }
          if (PIECE - z.avail_out)
            r = emit (w, w->out, PIECE - z.avail_out);
        }
      while (r == 0 && (z.avail_in > 0 || z.avail_out == 0));
    }
  if (gz && r == 0 && !z_end)
    {
      s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                 "pipe %s: s3://%s/%s: gzip data ends early; the FIFO is "
                 "closed early",
                 w->path, idx->buckets[obj->bucket], obj->key);
      r = -2;
    }
  if (gz)
    inflateEnd (&z);
  return r;
}

/* Whether the whole object is on a hydration's copy (no fetch can fail). */
static bool
on_copy (struct pipe *p, uint64_t o, uint64_t size)
{
  int fd;
  uint64_t fd_off;

  return serve_object_locate (p->cfg.serve, o, 0, size, &fd, &fd_off) == 0;
}

static void
recordio_header (unsigned char hdr[8], uint32_t len)
{
  /* cflag 0: a whole record */
  for (int b = 0; b < 4; b++)
    {
      hdr[b] = (unsigned char)(PIPE_RECORDIO_MAGIC >> (8 * b));
      hdr[4 + b] = (unsigned char)(len >> (8 * b));
    }
}

static const unsigned char zeros[4];

/* An augmented manifest's inline value: its JSON text as it is (never
 * inflated), as a record of its own.
 */
static int
send_inline (struct writer *w, const struct index_record *rec)
{
  unsigned char hdr[8];
  int r = 0;

  if (w->p->cfg.wrapper == PIPE_WRAP_RECORDIO)
    {
      recordio_header (hdr, rec->len);
      r = write_all (w, hdr, sizeof hdr);
    }
  if (r == 0)
    r = write_all (w, rec->text, rec->len);
  if (r == 0 && w->p->cfg.wrapper == PIPE_WRAP_RECORDIO && rec->len % 4)
    r = write_all (w, zeros, 4 - rec->len % 4);
  return r;
}

static int
send_object (struct writer *w, uint64_t i, uint64_t pos)
{
  struct pipe *p = w->p;
  uint64_t o = entry_object (p, w->list[i]);
  const struct index_object *obj;
  uint64_t len;
  unsigned char hdr[8];
  bool have_first = false;
  int r;

  if (o == INDEX_RECORD_INLINE)
    return send_inline (w, &p->cfg.idx->records[w->list[i]]);
  obj = &p->cfg.idx->objects[o];
  len = obj->size;
  if (p->cfg.wrapper == PIPE_WRAP_NONE)
    return stream_object (w, i, pos, emit_write, false);
  if (p->cfg.compression == PIPE_COMPRESS_GZIP)
    {
      /* The length first; a bad object is found before its header. */
      w->counted = 0;
      r = stream_object (w, i, pos, emit_count, false);
      if (r)
        return r;
      len = w->counted;
    }
  else if (len && !on_copy (p, o, len))
    {
      /* Its first piece before its header: an object that fails at once
       * (changed since indexing) leaves no header without a body.
       */
      struct s3bd_error err = { 0 };
      uint64_t n = len < PIECE ? len : PIECE;

      w->rd_pos = pos;
      advance (w);
      if (serve_object_read (p->cfg.serve, o, 0, n, w->in, &err) == -1)
        {
          s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                     "pipe %s: s3://%s/%s: %s; the FIFO is closed early",
                     w->path, p->cfg.idx->buckets[obj->bucket], obj->key,
                     err.msg);
          return -2;
        }
      have_first = true;
    }
  if (len > PIPE_RECORDIO_MAX)
    {
      s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                 "pipe %s: s3://%s/%s: %" PRIu64 " bytes: a RecordIO record "
                 "holds less than 2^29; the FIFO is closed early",
                 w->path, p->cfg.idx->buckets[obj->bucket], obj->key, len);
      return -2;
    }
  recordio_header (hdr, (uint32_t)len);
  r = write_all (w, hdr, sizeof hdr);
  if (r == 0)
    r = stream_object (w, i, pos, emit_write, have_first);
  if (r == 0 && len % 4)
    r = write_all (w, zeros, 4 - len % 4);
  return r;
}

/* ---- The writer thread ---- */

static double
now_s (void)
{
  struct timespec t;

  clock_gettime (CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void
fifo_name (const struct writer *w, uint64_t epoch, char *buf, size_t n)
{
  const struct pipe *p = w->p;

  if (p->cfg.readers == 1)
    snprintf (buf, n, "%s/%s_%" PRIu64, p->dir, p->channel, epoch);
  else
    snprintf (buf, n, "%s/%s-%u_%" PRIu64, p->dir, p->channel, w->reader,
              epoch);
}

/* Makes the FIFO and opens it once a reader has.  0 open, -1 stopping,
 * -2 an error (logged).
 */
static int
open_fifo (struct writer *w)
{
  struct pipe *p = w->p;
  struct stat st;

  if (mkfifo (w->path, 0600) == -1 && errno != EEXIST)
    {
      s3bd_logf (p->cfg.log, S3BD_LOG_ERROR, "pipe %s: mkfifo: %s", w->path,
                 strerror (errno));
      return -2;
    }
  if (stat (w->path, &st) == -1 || !S_ISFIFO (st.st_mode))
    {
      s3bd_logf (p->cfg.log, S3BD_LOG_ERROR,
                 "pipe %s: exists and is not a FIFO", w->path);
      return -2;
    }
  for (;;)
    {
      struct timespec t = { 0, OPEN_RETRY_MS * 1000000L };

      if (atomic_load (&p->stopping))
        return -1;
      w->fd = open (w->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (w->fd >= 0)
        {
          /* A piece per write, not 16 (the default 64 KiB): fewer
           * wake-ups on both sides.  Best effort: an unprivileged
           * process may be held below it by pipe-max-size.
           */
          (void)fcntl (w->fd, F_SETPIPE_SZ, (int)PIECE);
          return 0;
        }
      if (errno != ENXIO && errno != EINTR)
        {
          s3bd_logf (p->cfg.log, S3BD_LOG_ERROR, "pipe %s: open: %s", w->path,
                     strerror (errno));
          return -2;
        }
      nanosleep (&t, NULL);
    }
}

/* One epoch: -1 when stopping, else 0 (whatever the reader did). */
static int
run_epoch (struct writer *w, uint64_t epoch)
{
  struct pipe *p = w->p;
  uint64_t pos = 0;
  double t0;
  int r;

  fifo_name (w, epoch, w->path, sizeof w->path);
  make_list (w, epoch);
  r = open_fifo (w);
  if (r == -2)
    {
      /* Nothing to stream to: wait for stop rather than spin. */
      while (!atomic_load (&p->stopping))
        {
          struct timespec t = { 0, POLL_MS * 1000000L };
          nanosleep (&t, NULL);
        }
      return -1;
    }
  if (r == -1)
    {
      unlink (w->path);
      return -1;
    }
  t0 = now_s ();
  pthread_mutex_lock (&p->lock);
  w->cur = (struct epoch_stats){ .epoch = epoch };
  w->cur_active = true;
  pthread_mutex_unlock (&p->lock);
  r = 0;
  for (uint64_t i = 0; i < w->nlist && r == 0; i++)
    {
      r = send_object (w, i, pos);
      if (r == 0)
        {
          pthread_mutex_lock (&p->lock);
          w->cur.records++;
          pthread_mutex_unlock (&p->lock);
        }
      pos += entry_size (p, w->list[i]);
    }
  /* Gone before it is closed: a reader late for this epoch finds no
   * FIFO (and waits for its name) rather than one with no writer.
   */
  unlink (w->path);
  close (w->fd);
  w->fd = -1;
  pthread_mutex_lock (&p->lock);
  w->cur.seconds = now_s () - t0;
  w->cur.end = r == 0    ? "complete"
               : r == 1  ? "closed by the reader"
               : r == -1 ? "stopped"
                         : "closed early on an error";
  w->last = w->cur;
  w->have_last = true;
  w->cur_active = false;
  if (r != -1)
    w->epochs_done++;
  pthread_mutex_unlock (&p->lock);
  s3bd_logf (p->cfg.log, S3BD_LOG_INFO,
             "s3bd: pipe %s: epoch %" PRIu64 " %s: %" PRIu64
             " records, %" PRIu64 " bytes in %.3f s (%.1f MB/s)",
             w->path, epoch, w->last.end, w->last.records, w->last.bytes,
             w->last.seconds,
             w->last.seconds > 0 ? w->last.bytes / w->last.seconds / 1e6 : 0.0);
  return r == -1 ? -1 : 0;
}

static void *
writer_main (void *arg)
{
  struct writer *w = arg;
  struct pipe *p = w->p;
  sigset_t set;

  /* A reader that closes early makes write fail with EPIPE; the signal
   * it raises is this thread's, and blocked here.
   */
  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &set, NULL);
  for (uint64_t e = p->cfg.start; p->cfg.epochs == 0 || e < p->cfg.epochs; e++)
    {
      struct timespec zero = { 0, 0 };

      if (run_epoch (w, e) == -1)
        break;
      while (sigtimedwait (&set, NULL, &zero) == SIGPIPE)
        ;
    }
  return NULL;
}

/* ---- Life ---- */

/* An index with records: where its lines start and their bytes. */
static int
find_lines (struct pipe *p)
{
  const struct s3bd_index *idx = p->cfg.idx;
  uint64_t l = 0;

  if (idx->nrecords == 0)
    return 0;
  for (uint64_t r = 0; r < idx->nrecords; r++)
    p->nlines += idx->records[r].first;
  p->line_start = malloc ((p->nlines + 1) * sizeof *p->line_start);
  p->line_bytes = calloc (p->nlines, sizeof *p->line_bytes);
  if (p->line_start == NULL || p->line_bytes == NULL)
    return -1;
  for (uint64_t r = 0; r < idx->nrecords; r++)
    {
      const struct index_record *rec = &idx->records[r];

      if (rec->first)
        p->line_start[l++] = r;
      p->line_bytes[l - 1] += rec->object == INDEX_RECORD_INLINE
                                  ? rec->len
                                  : idx->objects[rec->object].size;
    }
  p->line_start[l] = idx->nrecords;
  return 0;
}

int
pipe_new (const struct pipe_config *cfg, struct pipe **out,
          struct s3bd_error *err)
{
  const struct s3bd_index *idx = cfg->idx;
  struct pipe *p;
  struct stat st;
  int e;

  if (cfg->readers < 1 || cfg->shard_count < 1
      || cfg->shard_index >= cfg->shard_count || cfg->ahead < 1
      || cfg->ahead > UINT64_MAX / cfg->readers)
    return s3bd_fail (err, S3BD_EINVAL,
                      "pipe: bad readers, shard or readahead share");
  if (cfg->epochs && cfg->start >= cfg->epochs)
    return s3bd_fail (err, S3BD_EINVAL,
                      "pipe-start=%" PRIu64 " is not before epochs=%" PRIu64
                      ": no epoch is left to stream",
                      cfg->start, cfg->epochs);
  if (stat (cfg->dir, &st) == -1)
    return s3bd_fail (err, S3BD_EINVAL, "pipe-dir=%s: %s", cfg->dir,
                      strerror (errno));
  if (!S_ISDIR (st.st_mode))
    return s3bd_fail (err, S3BD_EINVAL, "pipe-dir=%s: not a directory",
                      cfg->dir);
  if (cfg->wrapper == PIPE_WRAP_RECORDIO
      && cfg->compression == PIPE_COMPRESS_NONE)
    for (uint64_t i = 0; i < idx->nobjects; i++)
      if (idx->objects[i].size > PIPE_RECORDIO_MAX)
        return s3bd_fail (
            err, S3BD_EINVAL,
            "record-wrapper=recordio: s3://%s/%s is %" PRIu64
            " bytes, and a RecordIO record holds less than 2^29 (dmlc-core "
            "refuses more; its cflag parts mark escaped magic words, not "
            "pieces of a large record): use record-wrapper=none",
            idx->buckets[idx->objects[i].bucket], idx->objects[i].key,
            idx->objects[i].size);
  p = calloc (1, sizeof *p);
  if (p == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  p->cfg = *cfg;
  e = pthread_mutex_init (&p->lock, NULL);
  if (e)
    {
      free (p);
      return s3bd_fail (err, S3BD_ENOMEM, "pipe lock: %s", strerror (e));
    }
  p->dir = strdup (cfg->dir);
  p->channel = strdup (cfg->channel);
  p->w = calloc (cfg->readers, sizeof *p->w);
  if (p->dir == NULL || p->channel == NULL || p->w == NULL
      || find_lines (p) == -1)
    goto nomem;
  for (unsigned r = 0; r < cfg->readers; r++)
    {
      struct writer *w = &p->w[r];

      w->p = p;
      w->reader = r;
      w->fd = -1;
      w->list = malloc (
          (idx->nobjects > idx->nrecords ? idx->nobjects : idx->nrecords)
          * sizeof *w->list);
      w->lines = malloc ((p->nlines ? p->nlines : 1) * sizeof *w->lines);
      w->in = malloc (PIECE);
      w->out = malloc (PIECE);
      if (w->list == NULL || w->lines == NULL || w->in == NULL
          || w->out == NULL)
        goto nomem;
    }
  *out = p;
  return 0;

nomem:
  pipe_free (p);
  return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
}

int
pipe_start (struct pipe *p, struct s3bd_error *err)
{
  for (unsigned r = 0; r < p->cfg.readers; r++)
    {
      int e = pthread_create (&p->w[r].thread, NULL, writer_main, &p->w[r]);

      if (e)
        {
          pipe_stop (p);
          return s3bd_fail (err, S3BD_ENOMEM,
                            "cannot start a pipe writer thread: %s",
                            strerror (e));
        }
      p->w[r].started = true;
    }
  return 0;
}

void
pipe_stop (struct pipe *p)
{
  if (p == NULL)
    return;
  atomic_store (&p->stopping, true);
  for (unsigned r = 0; r < p->cfg.readers; r++)
    if (p->w[r].started)
      {
        pthread_join (p->w[r].thread, NULL);
        p->w[r].started = false;
      }
}

void
pipe_free (struct pipe *p)
{
  if (p == NULL)
    return;
  pipe_stop (p);
  for (unsigned r = 0; p->w && r < p->cfg.readers; r++)
    {
      free (p->w[r].list);
      free (p->w[r].lines);
      free (p->w[r].in);
      free (p->w[r].out);
    }
  free (p->w);
  free (p->dir);
  free (p->channel);
  free (p->line_start);
  free (p->line_bytes);
  pthread_mutex_destroy (&p->lock);
  free (p);
}

void
pipe_stats_line (struct pipe *p, char *buf, size_t n)
{
  size_t len = 0;

  if (n == 0)
    return;
  buf[0] = '\0';
  pthread_mutex_lock (&p->lock);
  for (unsigned r = 0; r < p->cfg.readers && len < n; r++)
    {
      const struct writer *w = &p->w[r];
      int k;

      k = snprintf (buf + len, n - len,
                    "; pipe reader %u: %" PRIu64 " epochs done", r,
                    w->epochs_done);
      if (k < 0)
        break;
      len += (size_t)k;
      if (len < n && w->cur_active)
        {
          k = snprintf (buf + len, n - len,
                        ", epoch %" PRIu64 " at %" PRIu64 " records, %" PRIu64
                        " bytes",
                        w->cur.epoch, w->cur.records, w->cur.bytes);
          len += k > 0 ? (size_t)k : 0;
        }
      if (len < n && w->have_last)
        {
          k = snprintf (buf + len, n - len,
                        ", last epoch %" PRIu64 " %s: %" PRIu64
                        " records, %" PRIu64 " bytes, %.3f s, %.1f MB/s",
                        w->last.epoch, w->last.end, w->last.records,
                        w->last.bytes, w->last.seconds,
                        w->last.seconds > 0
                            ? w->last.bytes / w->last.seconds / 1e6
                            : 0.0);
          len += k > 0 ? (size_t)k : 0;
        }
    }
  pthread_mutex_unlock (&p->lock);
}
