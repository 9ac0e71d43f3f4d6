/* s3bd: building the index of a source — the whole build that
 * s3bd-mkimage runs, and that the plugin runs at start-up for source=.
 *
 * One call: list the prefix (or read the manifest and look its objects
 * up, or read a saved listing), apply the key-to-path rules (dataset.h),
 * keep one shard, build the ext4 metadata (ext4.h) and encode the index
 * (index.h).  The result is the encoded index, the very bytes
 * s3bd-mkimage writes, so a device served from it is the device served
 * from that file.  Deterministic: the same objects and options give the
 * same bytes (the UUID and hash seed come from the source text, the
 * buckets and the shard; the only time is build_opts.time or the newest
 * object's).
 *
 * Nothing is written anywhere: the caller writes, uploads or decodes the
 * result.
 */
#ifndef S3BD_BUILD_H
#define S3BD_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "s3bd/dataset.h"
#include "s3bd/error.h"
#include "s3bd/s3.h"

struct build_opts
{
  /* The source: exactly one of these three. */
  const char *prefix_uri; /* "s3://bucket/prefix" */
  const char *manifest;   /* SageMaker manifest: a path or s3:// */
  const char *augmented;  /* augmented manifest: a path or s3:// */
  const char *attrs;      /* augmented: "a-ref,b-ref" (at most 64);
                             NULL: every attribute ending in -ref */
  const char *listing;    /* with prefix_uri: read this saved
                             listing ("SIZE\tETAG\tMTIME\tKEY"
                             lines) instead of listing S3 */
  unsigned shard_index;   /* keep objects i, i+n, ...: 0 <= i < n */
  unsigned shard_count;   /* 0 or 1: every object */
  uint32_t uid, gid;      /* default 0, 0 */
  uint16_t file_mode;     /* default 0444 */
  uint16_t dir_mode;      /* default 0555 */
  const char *label;      /* NULL or at most 16 bytes */
  int64_t time;           /* the image's own time; -1 (default):
                             the newest object's Last-Modified */
  unsigned parallel;      /* listings in flight, default 16 */
  /* Progress, optional, called in the calling thread: each phase as it
   * starts ("listing", "building the ext4 image", ...), and the objects
   * listed so far.
   */
  void (*phase) (void *arg, const char *what);
  s3_list_progress_fn list_progress;
  void *progress_arg;
};

/* Sets every field to its default (no source). */
void build_opts_init (struct build_opts *o);

/* Sets one of the options that shape the image from its text, the same
 * for s3bd-mkimage's --NAME and the plugin's NAME=: "uid" and "gid"
 * (decimal, 0 to 2^32-1), "file-mode" and "dir-mode" (octal permission
 * bits, 0 to 07777), "label" (at most 16 bytes; o keeps the pointer) and
 * "shard" ("I/N", 0 <= I < N).  Returns 0; -1 with err (S3BD_EINVAL, what
 * was expected: the caller names the option and value); or 1, changing
 * nothing, when name is none of these.
 */
int build_opts_set (struct build_opts *o, const char *name, const char *value,
                    struct s3bd_error *err);

/* SOURCE_DATE_EPOCH when it is set to a non-negative integer, else -1:
 * what both commands put in build_opts.time.
 */
int64_t build_source_date_epoch (void);

struct build_result
{
  void *index; /* the encoded index, malloc'd */
  size_t index_len;
  struct dataset ds;      /* the files and the keys left out */
  uint64_t bytes;         /* the files' total size */
  uint64_t device_blocks; /* of EXT4_BLOCK_SIZE bytes */
  uint64_t dirs;          /* directories in the image, root too */
  uint64_t records;       /* Pipe records (augmented manifests) */
  size_t lines_dropped;   /* augmented manifest lines left out of the
                             records: a file of theirs is not in the
                             image (left out, another shard) */
};

/* Builds the index of o's source.  c may be NULL only for a saved
 * listing; it is used in the calling thread (blocking calls).  Errors,
 * each naming its subject: the listing's or the manifest's (no such
 * bucket, authentication failed, ...), S3BD_EINVAL for bad options or a
 * source with no objects to serve, S3BD_ENOMEM.  On failure *out is
 * zeroed.
 */
int build_index (struct s3_client *c, const struct build_opts *o,
                 struct build_result *out, struct s3bd_error *err);

/* Frees what a result owns and zeroes it.  Safe to call twice. */
void build_result_free (struct build_result *r);

#endif
