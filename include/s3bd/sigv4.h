/* s3bd: AWS Signature Version 4, with the S3 rules.
 *
 * Pure functions over OpenSSL: no I/O, no clock, no globals, so that the
 * AWS test-suite vectors and botocore can check them byte for byte.
 *
 * S3 rules, as opposed to the generic service rules: the path is never
 * normalised (no removal of "." or "..", "//" kept), each path segment is
 * URI-encoded exactly once, and the payload hash is sent as the
 * x-amz-content-sha256 header, which is signed.
 */
#ifndef S3BD_SIGV4_H
#define S3BD_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

#define SIGV4_EMPTY_SHA256                                                     \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

struct sigv4_pair
{
  const char *name;
  const char *value;
};

struct sigv4_request
{
  const char *method;             /* "GET" */
  const char *path;               /* raw, not encoded: "/bucket/my key" */
  const struct sigv4_pair *query; /* raw names and values, any order */
  size_t nquery;
  const struct sigv4_pair *headers; /* all headers to sign, incl. host */
  size_t nheaders;
  const char *payload_sha256; /* hex, or SIGV4_UNSIGNED_PAYLOAD */
  const char *amz_date;       /* "20150830T123600Z" */
  const char *region;
  const char *service; /* "s3" */
  const char *access_key;
  const char *secret_key;
};

struct sigv4_result
{
  char signed_headers[1024]; /* "host;x-amz-date" */
  char signature[65];        /* hex */
  char authorization[2048];  /* the whole Authorization header value */
  /* Intermediate results, for tests and debugging (malloc'd, may be NULL). */
  char *canonical_request;
  char *string_to_sign;
};

/* Signs for the Authorization header.  Header names may be in any case and
 * order; values are trimmed and runs of white space folded to one space.
 * Headers with the same name are joined with ','.  Returns 0, or -1 when an
 * input is missing or a buffer would overflow.
 */
int sigv4_sign (const struct sigv4_request *req, struct sigv4_result *out);

/* Presigns for a query-string URL valid for `expires` seconds: fills *query
 * (malloc'd) with the canonical query string including X-Amz-Signature,
 * ready to append after '?'.  `req->headers` must contain only host (and
 * any header the URL user promises to send).
 */
int sigv4_presign (const struct sigv4_request *req, unsigned expires,
                   const char *session_token, struct sigv4_result *out,
                   char **query);

void sigv4_result_free (struct sigv4_result *out);

/* URI-encodes per SigV4: unreserved characters A-Z a-z 0-9 - _ . ~ are
 * kept, every other byte becomes %XX (upper case); '/' is kept when
 * keep_slash.  Returns a malloc'd string or NULL on ENOMEM.
 */
char *sigv4_uri_encode (const char *s, size_t len, bool keep_slash);

/* Lower-case hex SHA-256 of data into out[65]. */
void sigv4_sha256_hex (const void *data, size_t len, char out[65]);

/* Formats t (seconds since the epoch, UTC) as "YYYYMMDDTHHMMSSZ". */
void sigv4_amz_date (long long t, char out[17]);

#endif
