/* s3bd: what engine.c (queues, starting attempts, the loop) and
 * response.c (reading and judging responses) share.  Private to lib/.
 */
#ifndef S3BD_ENGINEINT_H
#define S3BD_ENGINEINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "s3bd/retry.h"

/* Relative to this file, so that unit tests, which have only the public
 * include directory, can include it too.
 */
#include "../common/strbuf.h"

struct s3_client;
struct s3_engine;
struct s3_request;

/* One request on its way through the engine, from submit to done. */
struct attempt
{
  struct s3_request *r;
  struct s3_engine *e;
  struct attempt *next;  /* in whichever queue holds it */
  struct attempt *rnext; /* in e->running while curl has it */
  CURL *easy;
  struct curl_slist *headers;
  char *url;
  uint64_t start_ms;     /* submission: the deadline counts from it */
  uint64_t ready_ms;     /* when a delayed retry may start */
  enum retry_class why;  /* of the last failure judged RETRY */
  unsigned taken;        /* quota tokens its retries took so far */
  const char *stopped;   /* why no retry followed a RETRY, if not the
                            deadline or the count */
  char payload_hash[65]; /* PUT: computed once */
  /* iov GETs: buffers [0, final) were reported final (r->progress), the
   * first final_bytes bytes of the body: no attempt writes them again.
   */
  int final;
  size_t final_bytes;
  /* Per attempt. */
  size_t written; /* body bytes received */
  int iov_i;      /* iov: where the next byte goes */
  size_t iov_off;
  size_t put_off;
  bool overflow;     /* server sent more than asked for */
  bool stalled;      /* no byte moved for stall_timeout_s: ended */
  curl_off_t moved;  /* bytes moved, up and down, when last seen */
  uint64_t moved_ms; /* when that changed; 0: not yet seen */
  bool refused;      /* a 2xx that is not the range asked: stopped unread */
  int body_ok;       /* 0 not yet known, 1 the range asked, 2 maybe (a 200
                        of unknown length), -1 not */
  int range_hdr;     /* Content-Range: 0 none, 1 parsed, -1 garbage */
  uint64_t range_first, range_last, range_total;
  char range_raw[48]; /* a garbage Content-Range, for the message */
  struct strbuf errbody;
  struct strbuf growbody;
  char curl_err[CURL_ERROR_SIZE];
};

/* What s3_response_judge makes of a finished attempt. */
enum verdict
{
  DONE_OK,
  DONE_ERROR,
  RETRY
};

/* ---- response.c ---- */

/* CURLOPT_WRITEFUNCTION: the body, into the request's buffers (arg: a).
 * Asks curl for the status and Content-Length, then s3_response_body.
 */
size_t s3_response_write_cb (char *data, size_t size, size_t nmemb, void *arg);

/* n more body bytes of a response with this status and Content-Length
 * (-1: none): into the request's buffers for a 2xx, reporting iov
 * buffers final (r->progress) only when the response is exactly the
 * range asked for; kept aside as the error document otherwise.  Returns
 * n, or 0 to stop the transfer (more than the buffers hold: a->overflow;
 * out of memory).
 */
size_t s3_response_body (struct attempt *a, const char *data, size_t n,
                         long status, curl_off_t content_length);

/* CURLOPT_HEADERFUNCTION: keeps ETag, Last-Modified, Content-Range. */
size_t s3_response_header_cb (char *line, size_t size, size_t nmemb, void *arg);

/* Judges a finished attempt (cc: curl's result) and fills in a->r:
 * asks curl for the status and Content-Length, then s3_response_decide.
 */
enum verdict s3_response_judge (const struct s3_client *c, struct attempt *a,
                                CURLcode cc);

/* The judgement itself, given the status and Content-Length (-1: none).
 * On DONE_ERROR and RETRY, a->r->err says why (RETRY: in case the retry
 * policy says no more), and on RETRY a->why is the failure's class.
 */
enum verdict s3_response_decide (const struct s3_client *c, struct attempt *a,
                                 CURLcode cc, long status,
                                 curl_off_t content_length);

#endif
