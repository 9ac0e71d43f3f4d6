/* s3bd: the growing array, private to lib/.
 *
 *   DEFINE_VECTOR (dir_vector, struct dir);
 *   struct dir_vector dirs = VECTOR_INIT;
 *   if (dir_vector_append (&dirs, d) == -1) ... ENOMEM
 *   dirs.ptr[0 .. dirs.len) are the elements; dir_vector_free (&dirs);
 *
 * Modelled on nbdkit's common/utils/vector.h.  The capacity doubles, so
 * appending n elements costs O(n); every size that reaches realloc is
 * checked for overflow, and a failed growth leaves the vector as it was.
 * Arrays whose struct is public (struct manifest) grow with vector_grow
 * on their own fields.
 */
#ifndef S3BD_VECTOR_H
#define S3BD_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `more` elements of elsize bytes after the first len of
 * ptr, which has *cap: returns the (maybe moved) array and updates *cap,
 * or NULL with errno ENOMEM, ptr untouched.  ptr may be NULL with *cap 0.
 */
static inline void *
vector_grow (void *ptr, size_t *cap, size_t len, size_t more, size_t elsize)
{
  size_t want, newcap;
  void *p;

  if (more <= *cap - len)
    return ptr;
  if (len > SIZE_MAX - more)
    goto nomem;
  want = len + more;
  newcap = *cap <= SIZE_MAX / 2 ? *cap * 2 : SIZE_MAX;
  if (newcap < want)
    newcap = want;
  if (newcap < 4)
    newcap = 4;
  if (newcap > SIZE_MAX / elsize)
    {
      /* Doubling overflows: try for exactly what was asked. */
      newcap = want;
      if (newcap > SIZE_MAX / elsize)
        goto nomem;
    }
  p = realloc (ptr, newcap * elsize);
  if (p == NULL)
    goto nomem;
  *cap = newcap;
  return p;

nomem:
  errno = ENOMEM;
  return NULL;
}

#define VECTOR_INIT                                                            \
  {                                                                            \
    NULL, 0, 0                                                                 \
  }

/* Declares struct name { type *ptr; size_t len, cap; } and its functions;
 * all zeros is an empty vector.  The functions are static inline: the
 * append in a loop over ten million files must cost a compare and a
 * store.
 */
#define DEFINE_VECTOR(name, type)                                              \
  struct name                                                                  \
  {                                                                            \
    type *ptr;                                                                 \
    size_t len, cap;                                                           \
  };                                                                           \
                                                                               \
  /* Room for n more elements without moving: 0, or -1 on ENOMEM. */           \
  static inline int __attribute__ ((__unused__))                               \
  name##_reserve (struct name *v, size_t n)                                    \
  {                                                                            \
    type *p = vector_grow (v->ptr, &v->cap, v->len, n, sizeof (type));         \
                                                                               \
    if (p == NULL)                                                             \
      return -1;                                                               \
    v->ptr = p;                                                                \
    return 0;                                                                  \
  }                                                                            \
                                                                               \
  static inline int __attribute__ ((__unused__))                               \
  name##_append (struct name *v, type elem)                                    \
  {                                                                            \
    if (v->len == v->cap && name##_reserve (v, 1) == -1)                       \
      return -1;                                                               \
    v->ptr[v->len++] = elem;                                                   \
    return 0;                                                                  \
  }                                                                            \
                                                                               \
  /* Appends one element of all zeros; NULL on ENOMEM. */                      \
  static inline type *__attribute__ ((__unused__))                             \
  name##_push_zero (struct name *v)                                            \
  {                                                                            \
    if (v->len == v->cap && name##_reserve (v, 1) == -1)                       \
      return NULL;                                                             \
    memset (&v->ptr[v->len], 0, sizeof (type));                                \
    return &v->ptr[v->len++];                                                  \
  }                                                                            \
                                                                               \
  /* Gives the array to the caller (NULL when empty) and empties v. */         \
  static inline type *__attribute__ ((__unused__))                             \
  name##_detach (struct name *v)                                               \
  {                                                                            \
    type *p = v->ptr;                                                          \
                                                                               \
    v->ptr = NULL;                                                             \
    v->len = v->cap = 0;                                                       \
    return p;                                                                  \
  }                                                                            \
                                                                               \
  static inline void __attribute__ ((__unused__)) name##_free (struct name *v) \
  {                                                                            \
    free (name##_detach (v));                                                  \
  }

#endif
