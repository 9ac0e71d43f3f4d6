/* s3bd: what index.c (checks, encoding), indexdecode.c (decoding) and
 * indexfile.c (files, look-up) share: the constants of the format
 * (docs/index-format.md) and a few helpers.  Private to lib/.
 */
#ifndef S3BD_INDEXINT_H
#define S3BD_INDEXINT_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "s3bd/error.h"
#include "s3bd/index.h"

/* ---- The format's constants (docs/index-format.md) ---- */

extern const char index_magic[8]; /* "S3BDIDX" with its NUL: 8 bytes */

/* Version 1: five sections, a 264-byte header.  Version 2: a sixth
 * section (RECORDS), its table entry, nrecords: a 304-byte header.  In
 * both the last 8 bytes of the header are a reserved u32 and the CRC.
 */
#define HEADER_SIZE 264 /* version 1 */
#define HEADER_SIZE_V2 304
#define TABLE_OFFSET 96
#define ENTRY_SIZE 32
#define HEADER_CRC_OFFSET 260 /* version 1 */
#define NSECTIONS_V1 5
#define NSECTIONS 6         /* version 2 */
#define NRECORDS_OFFSET 288 /* version 2 */

static inline uint32_t
header_size (uint32_t version)
{
  return version == 1 ? HEADER_SIZE : HEADER_SIZE_V2;
}

static inline int
nsections (uint32_t version)
{
  return version == 1 ? NSECTIONS_V1 : NSECTIONS;
}

enum section_type
{
  SEC_SOURCE = 1,
  SEC_OBJECTS,
  SEC_META_RUNS,
  SEC_META_CONTENT,
  SEC_LEFTOUT,
  SEC_RECORDS,
};

extern const char *const index_section_names[NSECTIONS + 1];

enum etag_kind
{
  ETAG_STRING = 0,     /* stored as bytes */
  ETAG_MD5_QUOTED = 1, /* "\"" 32 lower-case hex digits "\"" */
  ETAG_MD5_BARE = 2,   /* 32 lower-case hex digits */
};

/* S3 keys are at most 1024 bytes.  The limit also bounds what a
 * front-coded key column can expand to (n keys, at most 1025 bytes each).
 */
#define MAX_KEY 1024
#define MAX_ETAG 1024

/* The version index_encode writes for idx: 1 unless it has records. */
static inline uint32_t
index_version_for (const struct s3bd_index *idx)
{
  return idx->nrecords ? 2 : 1;
}

/* ---- Helpers ---- */

static inline uint64_t
object_blocks (uint64_t size, uint32_t block_size)
{
  return size / block_size + (size % block_size != 0);
}

/* zlib's crc32 takes 32-bit lengths; crc32_z takes size_t. */
static inline uint32_t
crc (const void *p, size_t len)
{
  return (uint32_t)crc32_z (crc32_z (0, Z_NULL, 0), p, len);
}

static inline int
oom (struct s3bd_error *err)
{
  return s3bd_fail (err, S3BD_ENOMEM, "index: out of memory");
}

/* The checks index_encode applies to its input and index_decode to its
 * output (index.c): 0, or -1 with err set.
 */
int index_check_header (const struct s3bd_index *idx, struct s3bd_error *err);
int index_check (const struct s3bd_index *idx, struct s3bd_error *err);

#endif
