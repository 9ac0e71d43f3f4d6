/* s3bd: a string arena, private to lib/.
 *
 * Many small strings copied into large blocks and freed all at once: a
 * listing or a dataset of millions of keys costs a few hundred
 * allocations instead of millions.  Bytes are not aligned: strings only.
 */
#ifndef S3BD_ARENA_H
#define S3BD_ARENA_H

#include <stddef.h>

#include "s3bd/s3.h"

/* An empty arena, or NULL on ENOMEM. */
struct s3_arena *s3_arena_new (void);
/* len bytes that live as long as the arena, or NULL on ENOMEM. */
char *s3_arena_alloc (struct s3_arena *a, size_t len);
/* A NUL-terminated copy of s[0..len), or NULL on ENOMEM. */
char *s3_arena_strndup (struct s3_arena *a, const char *s, size_t len);
/* Frees every block and the arena; a may be NULL. */
void s3_arena_free (struct s3_arena *a);

#endif
