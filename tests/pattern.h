/* s3bd tests: the contents of every test object are a pure function of
 * (key, offset), so any byte read back anywhere can be checked without
 * keeping a copy.  Byte o of key k is byte (o mod 8) of
 * splitmix64 (fnv1a64 (k) + (o / 8) * 0x9E3779B97F4A7C15), little-endian.
 */
#ifndef S3BD_TEST_PATTERN_H
#define S3BD_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

uint64_t pattern_seed (const char *key);
/* Fills buf with bytes [off, off+len) of the object with this seed. */
void pattern_fill (uint64_t seed, uint64_t off, void *buf, size_t len);
/* Returns the offset of the first wrong byte, or UINT64_MAX when all of
 * buf[0..len) equal bytes [off, off+len) of the object.
 */
uint64_t pattern_check (uint64_t seed, uint64_t off, const void *buf,
                        size_t len);

#endif
