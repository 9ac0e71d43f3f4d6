/* s3bd: the error buffer.  See include/s3bd/error.h.
 *
 * A message that does not fit loses its middle, not its end: messages
 * name their subject first and give the reason last ("manifest entry 3:
 * s3://b/KEY: no such key"), and what makes one too long is nearly always
 * a long key or name in between.  The cut is marked with how many bytes
 * went ("[...1234 bytes...]") and never splits a UTF-8 sequence.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/error.h"

static bool
utf8_continuation (char c)
{
  return ((unsigned char)c & 0xc0) == 0x80;
}

/* Stores s[0..n) in err->msg, cutting its middle when it does not fit. */
static void
set_msg (struct s3bd_error *err, const char *s, size_t n)
{
  const size_t room = sizeof err->msg - 1;
  char mark[32];
  size_t head, tail, m;

  if (n <= room)
    {
      memmove (err->msg, s, n);
      err->msg[n] = '\0';
      return;
    }
  /* The marker's length depends on the count it gives: take the
   * largest count's, then move the cut points off continuation bytes
   * (which only makes the cut longer, never the marker).
   */
  m = (size_t)snprintf (mark, sizeof mark, "[...%zu bytes...]", n);
  head = (room - m) / 2;
  tail = room - m - head;
  while (head > 0 && utf8_continuation (s[head]))
    head--;
  while (tail > 0 && utf8_continuation (s[n - tail]))
    tail--;
  snprintf (mark, sizeof mark, "[...%zu bytes...]", n - head - tail);
  m = strlen (mark);
  memmove (err->msg, s, head);
  memcpy (err->msg + head, mark, m);
  memmove (err->msg + head + m, s + n - tail, tail);
  err->msg[head + m + tail] = '\0';
}

/* Formats into err->msg, through a heap copy when the message is longer
 * than the buffer (without memory, the end is cut instead).  The
 * arguments may point into err->msg.
 */
static void format_msg (struct s3bd_error *err, const char *fmt, va_list ap)
    __attribute__ ((format (printf, 2, 0)));

static void
format_msg (struct s3bd_error *err, const char *fmt, va_list ap)
{
  char buf[sizeof err->msg], *s;
  va_list ap2;
  int n;

  va_copy (ap2, ap);
  n = vsnprintf (buf, sizeof buf, fmt, ap2);
  va_end (ap2);
  if (n >= 0 && (size_t)n >= sizeof buf && vasprintf (&s, fmt, ap) >= 0)
    {
      set_msg (err, s, (size_t)n);
      free (s);
      return;
    }
  memcpy (err->msg, buf, sizeof buf);
}

int
s3bd_fail (struct s3bd_error *err, enum s3bd_errcode code, const char *fmt, ...)
{
  va_list ap;

  if (err == NULL)
    return -1;
  err->code = code;
  va_start (ap, fmt);
  format_msg (err, fmt, ap);
  va_end (ap);
  return -1;
}

void
s3bd_error_prefix (struct s3bd_error *err, const char *fmt, ...)
{
  char *prefix = NULL, *all;
  size_t n, m;
  va_list ap;
  int r;

  if (err == NULL)
    return;
  va_start (ap, fmt);
  r = vasprintf (&prefix, fmt, ap);
  va_end (ap);
  if (r < 0)
    return; /* without memory, the message stays as it was */
  n = (size_t)r;
  m = strnlen (err->msg, sizeof err->msg);
  all = malloc (n + 2 + m);
  if (all)
    {
      memcpy (all, prefix, n);
      memcpy (all + n, ": ", 2);
      memcpy (all + n + 2, err->msg, m);
      set_msg (err, all, n + 2 + m);
      free (all);
    }
  free (prefix);
}

void
s3bd_error_clear (struct s3bd_error *err)
{
  if (err)
    memset (err, 0, sizeof *err);
}

const char *
s3bd_errname (enum s3bd_errcode code)
{
  switch (code)
    {
    case S3BD_OK: return "OK";
    case S3BD_EINVAL: return "EINVAL";
    case S3BD_ENOMEM: return "ENOMEM";
    case S3BD_EIO: return "EIO";
    case S3BD_ECREDS: return "ECREDS";
    case S3BD_EAUTH: return "EAUTH";
    case S3BD_EDENIED: return "EDENIED";
    case S3BD_ENOBUCKET: return "ENOBUCKET";
    case S3BD_ENOKEY: return "ENOKEY";
    case S3BD_ECHANGED: return "ECHANGED";
    case S3BD_ERANGE: return "ERANGE";
    case S3BD_ENET: return "ENET";
    case S3BD_ESERVER: return "ESERVER";
    case S3BD_EPROTO: return "EPROTO";
    case S3BD_EHTTP: return "EHTTP";
    }
  return "E?";
}
