/* s3bd commands: the S3 connection options every command takes, in one
 * table (documented in docs/s3-client.md).
 */
#ifndef S3BD_S3OPTS_H
#define S3BD_S3OPTS_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "s3bd/parse.h"
#include "s3bd/s3.h"

/* getopt_long values 1000-1099 are these options'. */
#define S3OPTS_FIRST 1000
#define S3OPTS_LAST 1099

extern const struct option s3opts_long[];
extern const char s3opts_help[];

/* Applies option `opt` (a value from s3opts_long) to cfg; exits with a
 * usage error (status 2) on a bad value.
 */
void s3opts_apply (const char *prog, int opt, const char *arg,
                   struct s3_config *cfg);

/* Parses option `opt`'s count in [min, max]; exits with a usage error
 * (status 2) naming the option otherwise.
 */
unsigned opt_count (const char *prog, const char *opt, const char *s,
                    unsigned min, unsigned max);

/* Fills all[0..n) with a command's own options followed by the S3
 * options and the terminating entry; exits if n is too small.
 */
void s3opts_merge (const struct option *own, struct option *all, size_t n);

#endif
