/* s3bd: parsing the numbers of options, one way everywhere.
 *
 * Counts and seconds are whole decimal numbers, as nbdkit_parse_unsigned
 * takes them: no sign, no suffix, no trailing bytes, no overflow
 * ("retries=1k" is an error, not 1024).  Sizes take a suffix K, M, G or
 * T (powers of 1024), as nbdkit_parse_size does.
 */
#ifndef S3BD_PARSE_H
#define S3BD_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "s3bd/error.h"

/* A whole number in base 8 or 10, from 0 to max; 0 or -1. */
int parse_unsigned (const char *s, int base, uint64_t max, uint64_t *out);

/* A size with an optional K/M/G/T suffix; 0 or -1. */
int parse_size (const char *s, uint64_t *out);

/* true/false, yes/no, on/off, 1/0 (any case); 0 or -1. */
int parse_bool (const char *s, bool *out);

/* A count from min to max: 0, or -1 with err saying what was expected
 * and what was given (the caller names the option).
 */
int parse_count (const char *s, uint64_t min, uint64_t max, uint64_t *out,
                 struct s3bd_error *err);

#endif
