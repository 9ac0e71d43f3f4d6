/* Unit tests of the data path: the bytes a test fetcher serves for
 * (object, offset), so that any byte a test reads can be checked.
 * Header-only: each test binary gets its own static copy.
 */
#ifndef S3BD_TEST_CHUNK_PATTERN_H
#define S3BD_TEST_CHUNK_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64's finaliser. */
static inline uint64_t
pattern_mix (uint64_t z)
{
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static inline unsigned char
pattern_byte (uint64_t object, uint64_t off)
{
  uint64_t w = pattern_mix (object * 0x9E3779B97F4A7C15u + (off >> 3) + 1);

  return (unsigned char)(w >> ((off & 7) * 8));
}

static inline void
pattern_fill_buf (uint64_t object, uint64_t off, unsigned char *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = pattern_byte (object, off + i);
}

/* Offset of the first wrong byte, or UINT64_MAX. */
static inline uint64_t
pattern_bad (uint64_t object, uint64_t off, const unsigned char *buf,
             size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != pattern_byte (object, off + i))
      return off + i;
  return UINT64_MAX;
}

#endif
