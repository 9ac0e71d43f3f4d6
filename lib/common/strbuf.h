/* s3bd: a growing string buffer, private to lib/.
 *
 * Appends never fail silently: on ENOMEM the buffer goes into an error
 * state that sticks, and strbuf_ok tells the caller once, at the end.
 */
#ifndef S3BD_STRBUF_H
#define S3BD_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf
{
  char *s; /* always NUL-terminated when ok */
  size_t len;
  size_t cap;
  bool failed;
};

#define STRBUF_INIT                                                            \
  {                                                                            \
    NULL, 0, 0, false                                                          \
  }

void strbuf_add (struct strbuf *b, const void *data, size_t len);
void strbuf_adds (struct strbuf *b, const char *s);
void strbuf_addc (struct strbuf *b, char c);
void strbuf_addf (struct strbuf *b, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
bool strbuf_ok (const struct strbuf *b);
/* Returns the string and leaves the buffer empty; NULL when failed. */
char *strbuf_detach (struct strbuf *b);
void strbuf_free (struct strbuf *b);

#endif
