/* s3bd: Pipe export, SageMaker's Pipe mode over a served index.
 *
 * Each local reader r gets one FIFO per epoch in a directory, named
 * <channel>_<epoch> when there is one reader and <channel>-<r>_<epoch>
 * when there are several (each looks like a SageMaker channel of its
 * own).  A writer thread per reader makes the FIFO, waits for the reader
 * to open it, writes its part of the epoch (the objects' bytes back to
 * back, or one RecordIO record per object), closes and removes it, and
 * makes the next epoch's.  A reader that closes early (EPIPE) ends its
 * epoch.  Bytes come through serve_object_read (the shared cache or the
 * hydration's copy), fetched ahead in the stream's own order within a
 * share of the readahead budget: a stalled reader grows nothing.
 *
 * With an index that has records (an augmented manifest), the unit that
 * is shuffled and cut is the line, and a line sends its records: a
 * "-ref" attribute's object, or an inline value's JSON text.
 *
 * The order of epoch e and who gets what are pure functions below
 * (docs/nbdkit-s3bd-plugin.md, "Pipe mode", spells them out so that a
 * user can recompute them offline).
 *
 * Locks: the pipe's lock protects the counters only; it is never held
 * across I/O or a call into the serve.
 */
#ifndef S3BD_PIPE_H
#define S3BD_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/error.h"
#include "s3bd/fetch.h"
#include "s3bd/index.h"
#include "s3bd/serve.h"

enum pipe_wrapper
{
  PIPE_WRAP_NONE,
  PIPE_WRAP_RECORDIO
};

enum pipe_compression
{
  PIPE_COMPRESS_NONE,
  PIPE_COMPRESS_GZIP /* objects are gzip files, sent decompressed */
};

#define PIPE_RECORDIO_MAGIC 0xCED7230Au
/* dmlc-core refuses a record of 2^29 bytes or more. */
#define PIPE_RECORDIO_MAX ((UINT64_C (1) << 29) - 1)

struct pipe_config
{
  struct serve *serve; /* must outlive the pipe */
  const struct s3bd_index *idx;
  const char *dir;     /* where the FIFOs are made */
  const char *channel; /* 1 to 200 bytes, no '/' */
  uint64_t start;      /* first epoch */
  uint64_t epochs;     /* epochs [start, epochs) are streamed; 0: no end */
  bool seeded;
  uint64_t seed;
  enum pipe_wrapper wrapper;
  enum pipe_compression compression;
  uint32_t shard_index, shard_count; /* 0, 1: the whole epoch */
  unsigned readers;                  /* FIFOs per epoch, >= 1 */
  uint64_t ahead;                    /* bytes fetched ahead per reader */
  s3bd_log_fn *log;
  int verbose;
};

struct pipe;

/* Checks the configuration (the directory exists; with RecordIO and no
 * compression, every object fits a record).  Starts nothing.
 */
int pipe_new (const struct pipe_config *cfg, struct pipe **out,
              struct s3bd_error *err);
/* Starts the writer threads. */
int pipe_start (struct pipe *p, struct s3bd_error *err);
/* Stops them (a FIFO being made or written is closed and removed). */
void pipe_stop (struct pipe *p);
void pipe_free (struct pipe *p);

/* Per reader: the epoch being written and its counters so far, and the
 * last finished epoch's records, bytes and throughput.
 */
void pipe_stats_line (struct pipe *p, char *buf, size_t n);

/* The order of epoch `epoch`: perm[k] is the index (in the index's
 * object order) of the k-th object.  Unseeded: 0, 1, ..., n-1.  Seeded:
 * a Fisher-Yates shuffle driven by splitmix64 (see the docs).
 */
void pipe_permutation (uint64_t n, bool seeded, uint64_t seed, uint64_t epoch,
                       uint64_t *perm);
/* Which of `parts` contiguous parts the k-th of a list goes to, balanced
 * by bytes: cum is the bytes of the objects before it, size its own,
 * total the list's.  By count (k of n) when total is 0.
 */
uint32_t pipe_part_of (uint64_t k, uint64_t n, uint64_t cum, uint64_t size,
                       uint64_t total, uint32_t parts);

#endif
