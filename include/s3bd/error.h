/* s3bd: error codes and the message buffer every library call fills.
 *
 * The library never prints and never exits: a call that fails returns -1
 * and describes the failure once, in the caller's struct s3bd_error.  The
 * message names its subject (bucket, key, file, line) and never contains a
 * secret.
 */
#ifndef S3BD_ERROR_H
#define S3BD_ERROR_H

#include <stddef.h>

enum s3bd_errcode
{
  S3BD_OK = 0,
  S3BD_EINVAL, /* bad configuration or input */
  S3BD_ENOMEM,
  S3BD_EIO,     /* local file I/O */
  S3BD_ECREDS,  /* no usable credentials */
  S3BD_EAUTH,   /* the server rejected the credentials or signature */
  S3BD_EDENIED, /* authenticated, but access denied */
  S3BD_ENOBUCKET,
  S3BD_ENOKEY,
  S3BD_ECHANGED, /* If-Match failed: the object changed (412) */
  S3BD_ERANGE,   /* range not satisfiable (416) */
  S3BD_ENET,     /* connection failure or timeout, retries exhausted */
  S3BD_ESERVER,  /* 5xx or throttling, retries exhausted */
  S3BD_EPROTO,   /* malformed or inconsistent response */
  S3BD_EHTTP,    /* any other HTTP failure */
};

struct s3bd_error
{
  enum s3bd_errcode code;
  int http_status;  /* 0 when no response was received */
  char s3_code[64]; /* S3 error code, e.g. "NoSuchKey", or "" */
  char msg[768];
};

/* Sets code and a formatted message (printf-style).  Returns -1 so that
 * callers can write `return s3bd_fail (err, ...);`.  err may be NULL.
 */
int s3bd_fail (struct s3bd_error *err, enum s3bd_errcode code, const char *fmt,
               ...) __attribute__ ((format (printf, 3, 4)));

/* Prefixes the existing message with more context ("listing s3://b/p: ..."). */
void s3bd_error_prefix (struct s3bd_error *err, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

void s3bd_error_clear (struct s3bd_error *err);

/* A short stable name for the code ("ECHANGED"). */
const char *s3bd_errname (enum s3bd_errcode code);

#endif
