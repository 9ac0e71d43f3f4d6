/* s3bd tests: the object pattern.  See pattern.h. */
#include <string.h>

#include "pattern.h"

uint64_t
pattern_seed (const char *key)
{
  uint64_t h = 0xcbf29ce484222325ULL;

  for (const unsigned char *p = (const unsigned char *)key; *p; p++)
    {
      h ^= *p;
      h *= 0x100000001b3ULL;
    }
  return h;
}

static uint64_t
word (uint64_t seed, uint64_t i)
{
  uint64_t z = seed + i * 0x9E3779B97F4A7C15ULL;

  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static unsigned char
byte_at (uint64_t seed, uint64_t off)
{
  return (unsigned char)(word (seed, off / 8) >> (8 * (off % 8)));
}

void
pattern_fill (uint64_t seed, uint64_t off, void *buf, size_t len)
{
  unsigned char *p = buf;

  /* Byte by byte up to a word boundary, then whole words. */
  while (len && off % 8)
    {
      *p++ = byte_at (seed, off++);
      len--;
    }
  while (len >= 8)
    {
      uint64_t w = word (seed, off / 8);

      for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(w >> (8 * i));
      p += 8;
      off += 8;
      len -= 8;
    }
  while (len--)
    *p++ = byte_at (seed, off++);
}

uint64_t
pattern_check (uint64_t seed, uint64_t off, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  unsigned char tmp[4096];

  for (size_t done = 0; done < len;)
    {
      size_t n = len - done < sizeof tmp ? len - done : sizeof tmp;

      pattern_fill (seed, off + done, tmp, n);
      if (memcmp (tmp, p + done, n) != 0)
        for (size_t i = 0; i < n; i++)
          if (tmp[i] != p[done + i])
            return off + done + i;
      done += n;
    }
  return UINT64_MAX;
}
