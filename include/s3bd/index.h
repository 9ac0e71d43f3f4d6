/* s3bd: the index file — everything needed to serve a dataset as an ext4
 * block device, in one file (e.g. train.s3bd).  Format: docs/index-format.md.
 *
 * Little-endian, fixed-width fields, versioned; the header and every
 * section carry a CRC-32 (zlib's) of their stored bytes, so a flipped byte
 * anywhere is reported, never trusted.  Columns are delta-encoded where
 * that helps and each section is compressed with zstd.  Deterministic: the
 * same input gives the same bytes (with a given libzstd).
 *
 * index_encode refuses what index_decode would refuse: both run the same
 * checks, so a struct that encodes is one every reader accepts.
 */
#ifndef S3BD_INDEX_H
#define S3BD_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/error.h"

/* The newest version this s3bd reads and writes.  It writes version 1
 * (five sections) for an index without Pipe records, version 2 (a sixth
 * section, RECORDS) for one with; it reads both.
 */
#define S3BD_INDEX_VERSION 2

enum index_source_kind
{
  INDEX_SOURCE_PREFIX = 1,
  INDEX_SOURCE_MANIFEST = 2,
  INDEX_SOURCE_AUGMENTED_MANIFEST = 3,
};

struct index_object
{
  const char *key;      /* 1 to 1024 bytes (S3's limit) */
  const char *etag;     /* as S3 returns it, quotes included; at
                           most 1024 bytes, may be "" */
  uint32_t bucket;      /* index into buckets */
  uint64_t size;        /* bytes */
  int64_t mtime;        /* seconds since the epoch */
  uint32_t mtime_nsec;  /* < 1000000000 */
  uint64_t first_block; /* device block of its first byte; its data
                           is contiguous: ceil(size / block_size)
                           blocks from there, the bytes past `size`
                           in the last block reading as zeros.  An
                           empty object holds no blocks; its
                           first_block is where its data would start
                           (e.g. the next object's), and it keeps the
                           order: no earlier than the previous
                           object's end */
};

/* A run of metadata blocks: device blocks [block, block + count) hold
 * the unique blocks content[first], content[first + 1], ..., or
 * content[first] `count` times when `repeated`.  count >= 1.
 */
struct index_meta_run
{
  uint64_t block;
  uint32_t count;
  uint32_t first;
  bool repeated;
};

struct index_leftout
{
  const char *key; /* 1 to 1024 bytes */
  uint32_t bucket;
  uint32_t reason; /* enum ds_reason; never 0 */
};

/* One record of a Pipe stream over an augmented manifest: one attribute
 * of one line, in line order and, on a line, in AttributeNames order.  A
 * "-ref" attribute sends its object's bytes; any other attribute sends
 * its value's JSON text, kept here.
 */
#define INDEX_RECORD_INLINE UINT64_MAX
#define INDEX_MAX_INLINE (1u << 20) /* bytes of one inline value */

struct index_record
{
  uint64_t object;  /* index into objects, or INDEX_RECORD_INLINE */
  const char *text; /* INDEX_RECORD_INLINE: the JSON text, len bytes,
                       no NUL byte; else NULL */
  uint32_t len;     /* INDEX_RECORD_INLINE: 1 to INDEX_MAX_INLINE */
  bool first;       /* the first record of its manifest line */
};

struct s3bd_index
{
  uint32_t block_size;    /* 4096 (a power of two, 512 to 65536) */
  uint64_t device_blocks; /* device size in blocks */
  uint64_t data_start;    /* first block of the data region: no
                             object starts before it */
  enum index_source_kind source_kind;
  const char *prefix; /* the source prefix or manifest URI */
  const char **buckets;
  uint32_t nbuckets;
  uint32_t shard_index, shard_count; /* 0, 1 when not sharded */
  int64_t created; /* SOURCE_DATE_EPOCH or time of the build */

  struct index_object *objects; /* sorted by first_block, not
                                   overlapping, in [data_start,
                                   device_blocks) */
  uint64_t nobjects;
  struct index_meta_run *runs; /* sorted by block, not overlapping
                                  each other or any object */
  uint64_t nruns;
  const unsigned char *content; /* ncontent blocks of block_size bytes */
  uint64_t ncontent;
  struct index_leftout *left;
  uint64_t nleft;
  struct index_record *records; /* augmented manifests only (source_kind
                                   3): the Pipe records, line by line;
                                   records[0].first.  None: every object
                                   is a record of its own */
  uint64_t nrecords;

  void *priv; /* storage owned by a decoded index; NULL in
                 one the caller built */
};

/* Checks idx (as index_decode would) and serialises it to a malloc'd
 * buffer.  Errors: S3BD_EINVAL naming what is wrong, S3BD_ENOMEM.
 */
int index_encode (const struct s3bd_index *idx, void **buf, size_t *len,
                  struct s3bd_error *err);

/* Parses and checks an encoded index (magic, version, every checksum,
 * every count and offset, objects sorted and inside the device, runs
 * sorted and not overlapping objects).  On success idx owns copies of
 * everything (free them with index_free); buf may be freed.  On failure
 * idx is zeroed and err says why: S3BD_EINVAL for anything wrong with
 * buf ("index section OBJECTS: checksum mismatch (corrupt index)"),
 * S3BD_ENOMEM.
 */
int index_decode (const void *buf, size_t len, struct s3bd_index *idx,
                  struct s3bd_error *err);

/* Writes atomically: a temporary file beside path (path.tmp.XXXXXX,
 * mode 0644), fsync, rename, fsync of the directory.  On failure nothing
 * is left behind and err names path (S3BD_EIO with the errno text).
 * index_read_file prefixes decode errors with the path.
 */
int index_write_file (const struct s3bd_index *idx, const char *path,
                      struct s3bd_error *err);
/* The same, for an index already encoded with index_encode. */
int index_write_encoded (const void *buf, size_t len, const char *path,
                         struct s3bd_error *err);
int index_read_file (const char *path, struct s3bd_index *idx,
                     struct s3bd_error *err);
/* index_read_file of a local path, or the object at an s3:// URI read
 * with client and decoded (errors then start "index URI").
 */
struct s3_client;
int index_load (struct s3_client *client, const char *where,
                struct s3bd_index *idx, struct s3bd_error *err);

/* Frees what a decoded index owns and zeroes it; does nothing to an
 * index the caller built (priv == NULL).  Safe to call twice.
 */
void index_free (struct s3bd_index *idx);

/* A SHA-256 of what the index makes the device hold: its geometry, every
 * object's place, bucket, key, ETag and size, and every metadata block.
 * Two indexes with the same digest serve the same bytes, whatever their
 * compression; hydration binds its local copy to it.  Not of the
 * left-out list or the source, which change no byte.
 */
#define S3BD_DIGEST_LEN 32
void index_digest (const struct s3bd_index *idx,
                   unsigned char out[S3BD_DIGEST_LEN]);

/* The MD5 that a single-part ETag is ("\"" 32 lower-case hex digits
 * "\"", quotes optional); false for any other ETag (a multipart one ends
 * in "-N").  An SSE-KMS or SSE-C object's single-part ETag is not the
 * MD5 of its bytes: a caller checking bytes must allow for it.
 */
bool index_etag_md5 (const char *etag, unsigned char md5[16]);

/* What a device block holds. */
enum index_block_kind
{
  INDEX_HOLE,
  INDEX_META,
  INDEX_DATA
};

struct index_lookup
{
  enum index_block_kind kind;
  uint64_t count;            /* blocks from `block` on with the same kind
                                and source: for META the rest of the run,
                                for DATA the rest of the object, for HOLE
                                up to the next mapped block or the end of
                                the device (or, sooner, up to an empty
                                object's first_block: ask again) */
  const unsigned char *meta; /* META: the block's bytes */
  uint64_t object;           /* DATA: index into objects */
  uint64_t object_block;     /* DATA: block offset inside the object */
};

/* Looks up one device block: O(log n).  Returns -1 when block is past
 * the end of the device.
 */
int index_lookup (const struct s3bd_index *idx, uint64_t block,
                  struct index_lookup *out);

#endif
