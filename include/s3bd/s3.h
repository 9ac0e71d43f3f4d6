/* s3bd: the S3 client.
 *
 * A client holds configuration and credentials.  Requests run on an
 * engine: one curl multi handle with a pool of keep-alive connections,
 * driven by one thread, with many transfers in flight.  Bodies of ranged
 * GETs are written straight into the caller's buffer.  Each request has
 * a deadline (timeout=) from its submission to the end of its last
 * attempt.  Transient failures (5xx, SlowDown, RequestTimeout, connection
 * resets, stalls, timeouts, and answers that are not the range asked for)
 * are retried until then, with exponential backoff and full jitter, while
 * the client's retry quota lasts (the AWS SDKs' standard mode); a 403,
 * 404, 412 or 416 is never retried.
 *
 * Two ways to use it:
 *  - blocking: s3_head, s3_get, s3_put, s3_list... run on the client's own
 *    engine in the calling thread (one caller at a time per client);
 *  - asynchronous: s3_engine_new, then s3_engine_submit from any thread and
 *    s3_engine_run in one thread; each request's done callback runs in the
 *    engine's thread.
 */
#ifndef S3BD_S3_H
#define S3BD_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "s3bd/creds.h"
#include "s3bd/error.h"
#include "s3bd/log.h"

enum s3_addressing
{
  S3_ADDR_AUTO = 0, /* virtual-hosted for AWS endpoints and DNS-safe
                       bucket names; path-style otherwise */
  S3_ADDR_PATH,
  S3_ADDR_VIRTUAL,
};

struct s3_config
{
  /* NULL: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url,
   * else https://s3.<region>.amazonaws.com */
  const char *endpoint;
  /* NULL: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, us-east-1 */
  const char *region;
  enum s3_addressing addressing;
  bool no_verify_tls;              /* default: verify certificates */
  const char *ca_file;             /* NULL: AWS_CA_BUNDLE, else system store */
  unsigned connect_timeout_ms;     /* default 5000, at most what is left of
                                      the deadline */
  unsigned stall_timeout_s;        /* an attempt below 1 KiB/s for this long
                                      is cut (and retried); default 5 */
  unsigned max_attempts;           /* per request; default 0: no count, only
                                      the deadline and the quota */
  unsigned retry_base_ms;          /* backoff base, default 100 */
  unsigned retry_throttle_base_ms; /* after throttling, default 500 */
  unsigned retry_cap_ms;           /* one delay at most, default 20000 */
  unsigned retry_budget_ms;        /* the deadline of a request, from
                                      submission to the end of its last
                                      attempt; default 60000 */
  unsigned retry_quota;            /* tokens of the client's retry quota,
                                      default RETRY_QUOTA_TOKENS (500) */
  unsigned max_connections;        /* per engine, default 64 */
  /* Debug lines (one per retry: request, reason, attempt, delay) go to
   * log when verbose is set; NULL says nothing.
   */
  s3bd_log_fn *log;
  int verbose;
  struct creds_config creds;
};

/* Sets one connection option of cfg by name, for the plugin (name=value)
 * and the commands (--name value) alike, with one meaning per name
 * (docs/s3-client.md):
 *   endpoint, region, profile, ca-file   strings (kept, not copied)
 *   path-style, tls-verify, anonymous    booleans
 *   connections, retries                 counts (retries: attempts at
 *                                        most; default no count)
 *   timeout                              seconds: the deadline of a whole
 *                                        request, retries included
 *   connect-timeout                      seconds: of one connection
 *   stall-timeout                        seconds: an attempt that moves
 *                                        less than 1 KiB/s for this long
 *                                        is cut and retried
 * Returns 0, -1 with err set (nothing changed) for a bad value, or 1 when
 * name is not one of these.
 */
int s3_config_set (struct s3_config *cfg, const char *name, const char *value,
                   struct s3bd_error *err);

struct s3_client;

int s3_client_new (const struct s3_config *cfg, struct s3_client **out,
                   struct s3bd_error *err);
void s3_client_free (struct s3_client *c);
const char *s3_client_endpoint (const struct s3_client *c);
const char *s3_client_region (const struct s3_client *c);
struct creds_provider *s3_client_creds (struct s3_client *c);

/* ---- Requests ---- */

enum s3_method
{
  S3_GET,
  S3_HEAD,
  S3_PUT
};

struct s3_param
{
  const char *name;
  const char *value; /* raw; encoded when sent */
};

#define S3_MAX_PARAMS 8

struct s3_request;
typedef void (*s3_done_fn) (struct s3_request *req, void *arg);
/* n: how many iov buffers, from the first, are final. */
typedef void (*s3_progress_fn) (struct s3_request *req, int n, void *arg);

struct s3_request
{
  /* In. */
  enum s3_method method;
  const char *bucket;
  const char *key; /* NULL or "" for bucket operations */
  struct s3_param params[S3_MAX_PARAMS];
  size_t nparams;
  bool ranged; /* send Range: bytes=off-(off+len-1) */
  uint64_t range_off;
  uint64_t range_len;   /* > 0 when ranged */
  const char *if_match; /* ETag as listed, quotes included */
  /* > 0: the object's size as listed, which a ranged GET's answer must
   * agree with (the total of its Content-Range, or the length of a 200).
   */
  uint64_t expect_size;
  /* GET body: into buf[0..buf_len) when buf is set (exactly buf_len bytes
   * expected for a ranged GET), else into a growing malloc'd buffer that
   * the caller frees (body, body_len).
   */
  void *buf;
  size_t buf_len;
  /* Or scattered over iov[0..iovcnt) (a ranged GET whose range_len is
   * their total), e.g. straight into cache chunks.
   */
  const struct iovec *iov;
  int iovcnt;
  const void *put_body; /* PUT */
  size_t put_len;
  s3_done_fn done; /* asynchronous only */
  /* Optional, for an iov GET on an engine: called in the engine's thread
   * each time more of the buffers, from the first, hold their final
   * bytes (a 2xx response for exactly the range asked for has filled
   * them), before done.  No later attempt writes to a buffer reported
   * final: a retry receives those bytes again and drops them.  Under
   * If-Match they are the same bytes of the same object.
   */
  s3_progress_fn progress;
  void *arg;

  /* Out. */
  int rc; /* 0 or -1 with err set */
  struct s3bd_error err;
  int status; /* HTTP status of the last attempt */
  char *body; /* growing buffer, see above */
  size_t body_len;
  uint64_t content_length;
  uint64_t object_size; /* from Content-Range, or Content-Length */
  char etag[80];
  char last_modified[40];
  unsigned attempts;

  void *priv; /* the engine's */
};

/* Sets a ranged GET of [off, off+len) into buf, with If-Match when etag
 * is not NULL.
 */
void s3_request_get_range (struct s3_request *r, const char *bucket,
                           const char *key, uint64_t off, uint64_t len,
                           const char *etag, void *buf);

/* Frees what a request allocated (body, engine state); not the request. */
void s3_request_release (struct s3_request *r);

/* Runs n requests on the client's engine, up to max_connections at once,
 * and returns when all are done: 0 when every one succeeded, else -1
 * (look at each request's rc and err).
 */
int s3_perform (struct s3_client *c, struct s3_request **reqs, size_t n);

/* ---- Asynchronous engine ---- */

struct s3_engine;

int s3_engine_new (struct s3_client *c, unsigned max_inflight,
                   struct s3_engine **out, struct s3bd_error *err);
void s3_engine_free (struct s3_engine *e);
/* Thread-safe.  The request must stay alive until its done callback. */
void s3_engine_submit (struct s3_engine *e, struct s3_request *r);
/* Runs transfers until every request submitted is done or timeout_ms has
 * passed; with nothing to do on entry, it first waits (up to timeout_ms)
 * for a submission.  Returns the number of requests not yet done.  Only
 * one thread may run an engine.
 */
size_t s3_engine_run (struct s3_engine *e, int timeout_ms);
/* Thread-safe: makes a blocked s3_engine_run return early. */
void s3_engine_wakeup (struct s3_engine *e);

/* Milliseconds on the monotonic clock (for timeouts, rates, progress). */
uint64_t s3_now_ms (void);

/* Statistics of an engine, summed over its life. */
struct s3_stats
{
  uint64_t requests; /* attempts sent */
  uint64_t retries;
  uint64_t failures; /* requests that ended in error */
  uint64_t bytes_in;
  uint64_t bytes_out;
};
void s3_engine_stats (struct s3_engine *e, struct s3_stats *out);
struct s3_engine *s3_client_engine (struct s3_client *c);

/* ---- Operations (blocking, on the client's engine) ---- */

struct s3_object
{
  char *key;  /* decoded; owned by the listing */
  char *etag; /* with quotes, as S3 returns it */
  uint64_t size;
  int64_t mtime; /* Last-Modified, seconds */
  uint32_t mtime_nsec;
};

struct s3_listing
{
  struct s3_object *objs;
  size_t n, cap;
  /* Strings live in arena blocks freed with the listing. */
  struct s3_arena *arena;
};

void s3_listing_free (struct s3_listing *l);
/* Appends a copy of key/etag; returns 0 or -1 on ENOMEM. */
int s3_listing_add (struct s3_listing *l, const char *key, size_t keylen,
                    const char *etag, uint64_t size, int64_t mtime,
                    uint32_t mtime_nsec);
/* Sorts by key, byte order (S3's UTF-8 binary order). */
void s3_listing_sort (struct s3_listing *l);

typedef void (*s3_list_progress_fn) (void *arg, uint64_t objects,
                                     uint64_t requests);

struct s3_list_opts
{
  /* 0 or 1: one paged listing of the whole prefix.  >1: walk the tree
   * by '/' (delimiter listings), up to this many requests in flight.
   */
  unsigned parallel;
  const char *start_after; /* sequential only */
  unsigned max_keys;       /* per page; 0: the server's (1000) */
  s3_list_progress_fn progress;
  void *progress_arg;
};

/* Lists every object under prefix, sorted by key. */
int s3_list (struct s3_client *c, const char *bucket, const char *prefix,
             const struct s3_list_opts *opts, struct s3_listing *out,
             struct s3bd_error *err);

struct s3_object_info
{
  uint64_t size;
  char etag[80];
  int64_t mtime;
};

int s3_head (struct s3_client *c, const char *bucket, const char *key,
             struct s3_object_info *out, struct s3bd_error *err);

/* Reads [off, off+len) into buf; with etag, fails with S3BD_ECHANGED when
 * the object's ETag differs.  Splits into chunk-sized ranged GETs run in
 * parallel when len > chunk (chunk 0: 8 MiB).
 */
int s3_get (struct s3_client *c, const char *bucket, const char *key,
            uint64_t off, uint64_t len, const char *etag, void *buf,
            size_t chunk, struct s3bd_error *err);

/* Reads a whole object, given as "s3://bucket/key", into a malloc'd
 * buffer with a NUL after its last byte: a HEAD for its size and ETag,
 * then ranged GETs with If-Match, so an object replaced in between is an
 * error (S3BD_ECHANGED), not a mix of two versions.
 */
int s3_read_object (struct s3_client *c, const char *uri, char **buf,
                    size_t *len, struct s3bd_error *err);

int s3_put (struct s3_client *c, const char *bucket, const char *key,
            const void *body, size_t len, char etag_out[80],
            struct s3bd_error *err);

int s3_create_bucket (struct s3_client *c, const char *bucket,
                      struct s3bd_error *err);

/* A presigned GET URL (malloc'd), valid for expires seconds. */
char *s3_presign_get (struct s3_client *c, const char *bucket, const char *key,
                      unsigned expires, struct s3bd_error *err);

/* Parses "s3://bucket/some/prefix" into malloc'd bucket and prefix
 * ("some/prefix", possibly "").
 */
int s3_parse_uri (const char *uri, char **bucket, char **prefix,
                  struct s3bd_error *err);

#endif
