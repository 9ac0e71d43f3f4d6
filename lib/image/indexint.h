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

#define HEADER_SIZE 264
#define TABLE_OFFSET 96
#define ENTRY_SIZE 32
#define HEADER_CRC_OFFSET 260
#define NSECTIONS 5

enum section_type
{
  SEC_SOURCE = 1,
  SEC_OBJECTS,
  SEC_META_RUNS,
  SEC_META_CONTENT,
  SEC_LEFTOUT,
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
