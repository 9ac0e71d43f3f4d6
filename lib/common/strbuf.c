/* s3bd: a growing string buffer.  See strbuf.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static bool
grow (struct strbuf *b, size_t more)
{
  size_t need, cap;
  char *p;

  if (b->failed)
    return false;
  if (more > SIZE_MAX - b->len - 1)
    goto fail;
  need = b->len + more + 1;
  if (need <= b->cap)
    return true;
  cap = b->cap ? b->cap : 64;
  while (cap < need)
    {
      if (cap > SIZE_MAX / 2)
        {
          cap = need;
          break;
        }
      cap *= 2;
    }
  p = realloc (b->s, cap);
  if (p == NULL)
    goto fail;
  b->s = p;
  b->cap = cap;
  return true;

fail:
  b->failed = true;
  return false;
}

void
strbuf_add (struct strbuf *b, const void *data, size_t len)
{
  if (!grow (b, len))
    return;
  if (len)
    memcpy (b->s + b->len, data, len);
  b->len += len;
  b->s[b->len] = '\0';
}

void
strbuf_adds (struct strbuf *b, const char *s)
{
  strbuf_add (b, s, strlen (s));
}

void
strbuf_addc (struct strbuf *b, char c)
{
  strbuf_add (b, &c, 1);
}

void
strbuf_addf (struct strbuf *b, const char *fmt, ...)
{
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vsnprintf (NULL, 0, fmt, ap);
  va_end (ap);
  if (n < 0)
    {
      b->failed = true;
      return;
    }
  if (!grow (b, (size_t)n))
    return;
  va_start (ap, fmt);
  vsnprintf (b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end (ap);
  b->len += (size_t)n;
}

bool
strbuf_ok (const struct strbuf *b)
{
  return !b->failed;
}

char *
strbuf_detach (struct strbuf *b)
{
  char *s;

  if (b->failed)
    {
      strbuf_free (b);
      return NULL;
    }
  if (b->s == NULL && !grow (b, 0))
    return NULL;
  if (b->s && b->len == 0)
    b->s[0] = '\0';
  s = b->s;
  b->s = NULL;
  b->len = b->cap = 0;
  return s;
}

void
strbuf_free (struct strbuf *b)
{
  free (b->s);
  b->s = NULL;
  b->len = b->cap = 0;
  b->failed = false;
}
