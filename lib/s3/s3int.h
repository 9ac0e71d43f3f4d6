/* s3bd: what s3.c (client, operations) and engine.c (transfers) share.
 * Private to lib/.
 */
#ifndef S3BD_S3INT_H
#define S3BD_S3INT_H

#include <stdbool.h>
#include <stdint.h>

#include "s3bd/retry.h"
#include "s3bd/s3.h"

struct s3_client
{
  char *endpoint; /* as configured, no trailing '/' */
  char *scheme;   /* "http" or "https" */
  char *host;     /* host, or host:port when a port is given */
  char *region;
  enum s3_addressing addressing; /* resolved: PATH or VIRTUAL */
  bool aws_host;                 /* endpoint is an AWS S3 host */
  bool no_verify_tls;
  char *ca_file;
  unsigned connect_timeout_ms;
  unsigned stall_timeout_s;
  unsigned max_connections;
  struct retry_policy retry;
  /* Shared by every engine of the client; atomic, no lock. */
  struct retry_quota quota;
  s3bd_log_fn *log; /* NULL unless verbose */
  struct creds_provider *creds;
  struct s3_engine *engine; /* for the blocking calls; lazily made */
};

/* The URL and Host header of a request (malloc'd), and the raw path that
 * the signature covers.  Returns 0 or -1 on ENOMEM.
 */
int s3_request_target (const struct s3_client *c, const struct s3_request *r,
                       char **url, char **host, char **path);

/* Describes a finished request for messages: "GET s3://b/k bytes 0-9". */
void s3_request_describe (const struct s3_request *r, char *buf, size_t n);

#endif
