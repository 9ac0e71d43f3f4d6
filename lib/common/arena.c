/* s3bd: the string arena.  See arena.h.
 *
 * A bucket can hold millions of keys.  One malloc per key and one per
 * ETag would cost two allocations per object and about as much again in
 * allocator overhead, so the strings of a listing or a dataset are
 * copied into large blocks instead and freed all at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Large enough that a listing of a million objects uses a few hundred
 * blocks, small enough not to matter for a listing of one.
 */
#define ARENA_BLOCK_SIZE ((size_t)256 * 1024)

struct arena_block
{
  struct arena_block *next;
  size_t used;
  size_t cap;
  char data[];
};

struct s3_arena
{
  /* The block being filled comes first; full blocks and blocks given
   * whole to one long string follow.
   */
  struct arena_block *head;
};

static struct arena_block *
arena_block_new (size_t cap)
{
  struct arena_block *b;

  if (cap > SIZE_MAX - sizeof *b)
    return NULL;
  b = malloc (sizeof *b + cap);
  if (b == NULL)
    return NULL;
  b->next = NULL;
  b->used = 0;
  b->cap = cap;
  return b;
}

struct s3_arena *
s3_arena_new (void)
{
  return calloc (1, sizeof (struct s3_arena));
}

char *
s3_arena_alloc (struct s3_arena *a, size_t len)
{
  struct arena_block *b = a->head;
  char *p;

  if (b != NULL && b->cap - b->used >= len)
    {
      p = b->data + b->used;
      b->used += len;
      return p;
    }

  /* A string longer than a quarter block gets a block of its own, behind
   * the current one, so that the current block's free space is not lost.
   */
  if (len > ARENA_BLOCK_SIZE / 4 && b != NULL)
    {
      struct arena_block *big = arena_block_new (len);

      if (big == NULL)
        return NULL;
      big->used = len;
      big->next = b->next;
      b->next = big;
      return big->data;
    }

  b = arena_block_new (len > ARENA_BLOCK_SIZE ? len : ARENA_BLOCK_SIZE);
  if (b == NULL)
    return NULL;
  b->next = a->head;
  a->head = b;
  b->used = len;
  return b->data;
}

char *
s3_arena_strndup (struct s3_arena *a, const char *s, size_t len)
{
  char *p;

  if (len == SIZE_MAX)
    return NULL;
  p = s3_arena_alloc (a, len + 1);
  if (p == NULL)
    return NULL;
  memcpy (p, s, len);
  p[len] = '\0';
  return p;
}

void
s3_arena_free (struct s3_arena *a)
{
  struct arena_block *b, *next;

  if (a == NULL)
    return;
  for (b = a->head; b != NULL; b = next)
    {
      next = b->next;
      free (b);
    }
  free (a);
}
