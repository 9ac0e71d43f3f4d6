/* s3bd: the error buffer.  See include/s3bd/error.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "s3bd/error.h"

int
s3bd_fail (struct s3bd_error *err, enum s3bd_errcode code, const char *fmt, ...)
{
  va_list ap;

  if (err == NULL)
    return -1;
  err->code = code;
  va_start (ap, fmt);
  vsnprintf (err->msg, sizeof err->msg, fmt, ap);
  va_end (ap);
  return -1;
}

void
s3bd_error_prefix (struct s3bd_error *err, const char *fmt, ...)
{
  char prefix[sizeof err->msg];
  char old[sizeof err->msg];
  size_t n, m;
  va_list ap;

  if (err == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (prefix, sizeof prefix, fmt, ap);
  va_end (ap);
  memcpy (old, err->msg, sizeof old);
  /* Cut the old message, not the prefix, when both don't fit. */
  n = strlen (prefix);
  memcpy (err->msg, prefix, n);
  if (n + 2 < sizeof err->msg)
    {
      memcpy (err->msg + n, ": ", 2);
      n += 2;
      m = strnlen (old, sizeof err->msg - n - 1);
      memcpy (err->msg + n, old, m);
      n += m;
    }
  err->msg[n] = '\0';
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
