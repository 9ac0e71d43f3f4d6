/* s3bd: the transfer engine.
 *
 * How it works.  An engine owns one curl multi handle, whose connection
 * cache keeps connections to the endpoint alive between requests.  Any
 * thread may submit a request (s3_engine_submit puts it on the submitted
 * list under the lock and wakes the multi handle); exactly one thread runs
 * the engine (s3_engine_run), which:
 *   1. moves submitted requests to the ready queue, and starts delayed
 *      retries whose time has come;
 *   2. starts ready requests while fewer than max_inflight are running
 *      or waiting to retry: each attempt is signed afresh (new date,
 *      current credentials);
 *   3. lets curl move bytes: a GET body goes straight into the caller's
 *      buffer, never past its end (the body and header callbacks are in
 *      response.c);
 *   4. judges each finished attempt (s3_response_judge, response.c):
 *      success; a transient failure that the retry policy allows (queued
 *      again after a jittered delay, logged at verbose); or a final
 *      error, described once in the request's err.  Then it calls the
 *      request's done callback, after which it never touches the request.
 *
 * Retries (retry.c has the policy): a request's deadline, timeout=,
 * counts from its submission and bounds every attempt too (curl's
 * CURLOPT_TIMEOUT_MS is what is left of it), so a server that trickles
 * or stalls cannot hold a request past it; a stall (no byte for
 * stall_timeout_s, or less than STALL_BYTES_PER_S) is cut sooner, and
 * retried.  A retry waiting
 * out its delay keeps its place among the max_inflight.  Each retry takes
 * tokens from the client's quota (c->quota, shared by its engines, an
 * atomic counter), each success gives them back: when most requests
 * fail the quota runs dry and failures are final at once.
 *
 * This file has the queues, starting attempts and the loop; response.c
 * reads responses and decides what they mean; engineint.h is what the
 * two share.
 *
 * When the multi handle itself fails (curl_multi_perform, _poll or
 * _timeout return an error), libcurl considers every transfer still in
 * it failed: multi_failed ends each one with that error, the request's
 * final error (no retry), and empties the multi handle, which may then
 * take new transfers.  A poll that fails is replaced by a sleep for that
 * round, so that a multi handle that keeps failing fails each request
 * once and never makes the loop spin.  A wakeup that fails
 * (curl_multi_wakeup) loses nothing: the request stays queued, and the
 * engine, told so, polls at most WAKEUP_LOST_MS apart from then on.
 *
 * Lock: e->lock protects submitted, outstanding, woken, wakeup_lost and
 * stats.  Everything else belongs to the engine's thread.  No lock is
 * held while curl runs or while a done callback runs.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "s3bd/sigv4.h"
#include "engineint.h"
#include "s3int.h"
#include "common/strbuf.h"

/* Once a wakeup has failed, the longest the engine sleeps without
 * looking at the submitted queue.
 */
#define WAKEUP_LOST_MS 20

/* Below this an attempt is stalled (for stall_timeout_s). */
#define STALL_BYTES_PER_S 1024

struct queue
{
  struct attempt *head, *tail;
};

struct s3_engine
{
  struct s3_client *client;
  CURLM *multi;
  unsigned max_inflight;

  pthread_mutex_t lock;
  /* protects: */
  struct queue submitted;
  size_t outstanding; /* submitted and not yet done */
  bool woken;         /* s3_engine_wakeup since the last run returned */
  bool wakeup_lost;   /* a curl_multi_wakeup failed: poll in short naps */
  struct s3_stats stats;

  /* Engine thread only. */
  struct queue ready;
  struct attempt *delayed; /* sorted by ready_ms */
  unsigned ndelayed;       /* length of delayed */
  struct attempt *running; /* added to the multi handle */
  unsigned inflight;       /* length of running */
};

/* A default mutex fails to lock or unlock only when misused (not
 * initialised, not owned): a bug here, never a condition at run time.
 */
static void
lock (struct s3_engine *e)
{
  int rc = pthread_mutex_lock (&e->lock);

  assert (rc == 0);
  (void)rc;
}

static void
unlock (struct s3_engine *e)
{
  int rc = pthread_mutex_unlock (&e->lock);

  assert (rc == 0);
  (void)rc;
}

static void
queue_push (struct queue *q, struct attempt *a)
{
  a->next = NULL;
  if (q->tail)
    q->tail->next = a;
  else
    q->head = a;
  q->tail = a;
}

static struct attempt *
queue_pop (struct queue *q)
{
  struct attempt *a = q->head;

  if (a)
    {
      q->head = a->next;
      if (q->head == NULL)
        q->tail = NULL;
      a->next = NULL;
    }
  return a;
}

uint64_t
s3_now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
random64 (void)
{
  uint64_t v = 0;

  /* Jitter needs no cryptographic strength, but RAND_bytes is there and
   * needs no seeding.  On failure a zero delay is harmless.
   */
  if (RAND_bytes ((unsigned char *)&v, sizeof v) != 1)
    v = 0;
  return v;
}

/* The error code for a failure of the multi handle. */
static enum s3bd_errcode
multi_errcode (CURLMcode mc)
{
  return mc == CURLM_OUT_OF_MEMORY ? S3BD_ENOMEM : S3BD_EIO;
}

int
s3_engine_new (struct s3_client *c, unsigned max_inflight,
               struct s3_engine **out, struct s3bd_error *err)
{
  struct s3_engine *e = calloc (1, sizeof *e);
  CURLMcode mc;
  int rc;

  *out = NULL;
  if (e == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  e->client = c;
  e->max_inflight = max_inflight ? max_inflight : c->max_connections;
  rc = pthread_mutex_init (&e->lock, NULL);
  if (rc != 0)
    {
      free (e);
      return s3bd_fail (err, S3BD_ENOMEM,
                        "cannot create the transfer engine's lock: %s",
                        strerror (rc));
    }
  e->multi = curl_multi_init ();
  if (e->multi == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "curl_multi_init failed");
      goto fail;
    }
  /* One connection per transfer in flight, all kept alive.  HTTP/1.1:
   * S3 serves ranged GETs best over many plain connections.
   */
  mc = curl_multi_setopt (e->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)e->max_inflight);
  if (mc != CURLM_OK)
    {
      s3bd_fail (err, multi_errcode (mc),
                 "curl_multi_setopt CURLMOPT_MAX_HOST_CONNECTIONS %u: %s",
                 e->max_inflight, curl_multi_strerror (mc));
      goto fail;
    }
  mc = curl_multi_setopt (e->multi, CURLMOPT_MAXCONNECTS,
                          (long)e->max_inflight);
  if (mc != CURLM_OK)
    {
      s3bd_fail (err, multi_errcode (mc),
                 "curl_multi_setopt CURLMOPT_MAXCONNECTS %u: %s",
                 e->max_inflight, curl_multi_strerror (mc));
      goto fail;
    }
  *out = e;
  return 0;

fail:
  s3_engine_free (e);
  return -1;
}

static void
attempt_reset (struct attempt *a)
{
  curl_slist_free_all (a->headers);
  a->headers = NULL;
  free (a->url);
  a->url = NULL;
  a->written = 0;
  a->iov_i = 0;
  a->iov_off = 0;
  a->put_off = 0;
  a->overflow = false;
  a->stalled = false;
  a->moved = 0;
  a->moved_ms = 0;
  a->refused = false;
  a->body_ok = 0;
  a->range_hdr = 0;
  a->range_first = a->range_last = a->range_total = 0;
  a->range_raw[0] = '\0';
  strbuf_free (&a->errbody);
  strbuf_free (&a->growbody);
  a->curl_err[0] = '\0';
}

static void
attempt_free (struct attempt *a)
{
  if (a == NULL)
    return;
  attempt_reset (a);
  if (a->easy)
    curl_easy_cleanup (a->easy);
  free (a);
}

void
s3_engine_free (struct s3_engine *e)
{
  struct attempt *a;
  int rc;

  if (e == NULL)
    return;
  /* Requests still queued are abandoned; their owners are going away
   * with the engine.  Nothing is reported from here: removing a handle
   * from a multi handle about to be cleaned up can only fail if the
   * multi handle is already broken, and curl_easy_cleanup detaches it
   * anyway.
   */
  while ((a = queue_pop (&e->submitted)))
    attempt_free (a);
  while ((a = queue_pop (&e->ready)))
    attempt_free (a);
  while ((a = e->delayed))
    {
      e->delayed = a->next;
      attempt_free (a);
    }
  while ((a = e->running))
    {
      e->running = a->rnext;
      (void)curl_multi_remove_handle (e->multi, a->easy);
      attempt_free (a);
    }
  if (e->multi)
    (void)curl_multi_cleanup (e->multi);
  /* EBUSY would mean a thread still holds the lock: a use after free in
   * the making.
   */
  rc = pthread_mutex_destroy (&e->lock);
  assert (rc == 0);
  (void)rc;
  free (e);
}

/* Wakes the thread blocked in curl_multi_poll.  A wakeup that fails is
 * not fatal to anything queued: the engine is told to stop relying on
 * wakeups and to nap at most WAKEUP_LOST_MS, so the request waits that
 * long at most instead of for the whole poll.
 */
static void
wake (struct s3_engine *e)
{
  CURLMcode mc = curl_multi_wakeup (e->multi);

  if (mc != CURLM_OK)
    {
      lock (e);
      e->wakeup_lost = true;
      unlock (e);
    }
}

void
s3_engine_submit (struct s3_engine *e, struct s3_request *r)
{
  struct attempt *a = calloc (1, sizeof *a);

  r->rc = 0;
  s3bd_error_clear (&r->err);
  r->status = 0;
  r->attempts = 0;
  r->body = NULL;
  r->body_len = 0;
  r->etag[0] = r->last_modified[0] = '\0';
  r->content_length = r->object_size = 0;
  r->priv = NULL;
  if (a == NULL)
    {
      /* Fail the request through the normal path so the owner is told. */
      r->rc = s3bd_fail (&r->err, S3BD_ENOMEM, "out of memory");
      if (r->done)
        r->done (r, r->arg);
      return;
    }
  a->r = r;
  a->e = e;
  a->start_ms = s3_now_ms ();
  r->priv = a;
  lock (e);
  queue_push (&e->submitted, a);
  e->outstanding++;
  unlock (e);
  wake (e);
}

void
s3_engine_wakeup (struct s3_engine *e)
{
  lock (e);
  e->woken = true;
  unlock (e);
  wake (e);
}

void
s3_engine_stats (struct s3_engine *e, struct s3_stats *out)
{
  lock (e);
  *out = e->stats;
  unlock (e);
}

/* ---- Starting an attempt ---- */

/* Feeds a PUT body to curl. */
static size_t
read_cb (char *buf, size_t size, size_t nmemb, void *arg)
{
  struct attempt *a = arg;
  size_t n = size * nmemb, left = a->r->put_len - a->put_off;

  if (n > left)
    n = left;
  memcpy (buf, (const char *)a->r->put_body + a->put_off, n);
  a->put_off += n;
  return n;
}

static int
add_header (struct curl_slist **list, const char *name, const char *value)
{
  struct strbuf b = STRBUF_INIT;
  struct curl_slist *l;

  strbuf_addf (&b, "%s: %s", name, value);
  if (!strbuf_ok (&b))
    return -1;
  l = curl_slist_append (*list, b.s);
  strbuf_free (&b);
  if (l == NULL)
    return -1;
  *list = l;
  return 0;
}

/* Signs the attempt and builds its header list. */
static int
sign_attempt (struct attempt *a, const char *host, const char *path)
{
  struct s3_client *c = a->e->client;
  struct s3_request *r = a->r;
  struct s3_creds cr;
  struct sigv4_pair hdr[8], q[S3_MAX_PARAMS];
  struct sigv4_request sr;
  struct sigv4_result res;
  char amz_date[17], range[64];
  const char *payload;
  size_t nh = 0;
  int ret = -1;

  if (creds_get (c->creds, &cr, &r->err) == -1)
    return -1;
  payload = SIGV4_EMPTY_SHA256;
  if (r->method == S3_PUT)
    {
      if (a->payload_hash[0] == '\0')
        sigv4_sha256_hex (r->put_body ? r->put_body : "", r->put_len,
                          a->payload_hash);
      payload = a->payload_hash;
    }
  sigv4_amz_date ((long long)time (NULL), amz_date);

  hdr[nh++] = (struct sigv4_pair){ "host", host };
  hdr[nh++] = (struct sigv4_pair){ "x-amz-date", amz_date };
  hdr[nh++] = (struct sigv4_pair){ "x-amz-content-sha256", payload };
  if (cr.session_token[0])
    hdr[nh++] = (struct sigv4_pair){ "x-amz-security-token", cr.session_token };
  if (r->ranged)
    {
      snprintf (range, sizeof range, "bytes=%" PRIu64 "-%" PRIu64, r->range_off,
                r->range_off + r->range_len - 1);
      hdr[nh++] = (struct sigv4_pair){ "range", range };
    }
  if (r->if_match)
    hdr[nh++] = (struct sigv4_pair){ "if-match", r->if_match };

  for (size_t i = 0; i < nh; i++)
    if (add_header (&a->headers, hdr[i].name, hdr[i].value) == -1)
      goto nomem;
  /* No 100-continue round trip for PUT; no compressed bodies. */
  if (add_header (&a->headers, "Expect", "") == -1)
    goto nomem;

  if (!cr.anonymous)
    {
      for (size_t i = 0; i < r->nparams; i++)
        q[i] = (struct sigv4_pair){ r->params[i].name, r->params[i].value };
      sr = (struct sigv4_request){
        .method = r->method == S3_GET    ? "GET"
                  : r->method == S3_HEAD ? "HEAD"
                                         : "PUT",
        .path = path,
        .query = q,
        .nquery = r->nparams,
        .headers = hdr,
        .nheaders = nh,
        .payload_sha256 = payload,
        .amz_date = amz_date,
        .region = c->region,
        .service = "s3",
        .access_key = cr.access_key,
        .secret_key = cr.secret_key,
      };
      if (sigv4_sign (&sr, &res) == -1)
        {
          s3bd_fail (&r->err, S3BD_EINVAL, "cannot sign the request");
          goto out;
        }
      sigv4_result_free (&res);
      if (add_header (&a->headers, "Authorization", res.authorization) == -1)
        goto nomem;
    }
  ret = 0;
  goto out;

nomem:
  s3bd_fail (&r->err, S3BD_ENOMEM, "out of memory");
out:
  memset (&cr, 0, sizeof cr);
  return ret;
}

/* What is left of the request's deadline (timeout=), at least 1 ms: the
 * most an attempt may take, connecting included, so that no server, be
 * it frozen (the kernel still completes the handshake), trickling or
 * stalled, holds a request past it.
 */
static uint64_t
deadline_left_ms (const struct s3_client *c, const struct attempt *a)
{
  uint64_t spent = s3_now_ms () - a->start_ms;

  return spent + 1 < c->retry.budget_ms ? c->retry.budget_ms - spent : 1;
}

/* Sets an option of an attempt's easy handle, or fails the attempt with
 * the option's name: an option refused is an option libcurl was built
 * without (a CA file without TLS) or out of memory, never worth a retry.
 */
#define SETOPT(a, opt, val)                                                    \
  do                                                                           \
    {                                                                          \
      CURLcode cc_ = curl_easy_setopt ((a)->easy, opt, val);                   \
      if (cc_ != CURLE_OK)                                                     \
        return setopt_failed ((a), #opt, cc_);                                 \
    }                                                                          \
  while (0)

static int
setopt_failed (struct attempt *a, const char *opt, CURLcode cc)
{
  return s3bd_fail (&a->r->err,
                    cc == CURLE_OUT_OF_MEMORY ? S3BD_ENOMEM : S3BD_EINVAL,
                    "curl_easy_setopt %s: %s", opt, curl_easy_strerror (cc));
}

/* CURLOPT_XFERINFOFUNCTION: ends an attempt that has moved no byte for
 * stall_timeout_s.  curl's low-speed limit alone would notice a body that
 * stops after a fast start seconds late, as it averages the speed over
 * the last 5 s; this clock starts at the last byte.  curl calls it at
 * least once a second (the low-speed check wakes it).
 */
static int
xferinfo_cb (void *arg, curl_off_t dltotal, curl_off_t dlnow,
             curl_off_t ultotal, curl_off_t ulnow)
{
  struct attempt *a = arg;
  uint64_t now = s3_now_ms ();

  (void)dltotal;
  (void)ultotal;
  if (a->moved_ms == 0 || dlnow + ulnow != a->moved)
    {
      a->moved = dlnow + ulnow;
      a->moved_ms = now;
      return 0;
    }
  if (now - a->moved_ms < (uint64_t)a->e->client->stall_timeout_s * 1000)
    return 0;
  a->stalled = true;
  return 1;
}

/* Every option of one attempt, on a handle just reset. */
static int
set_options (struct attempt *a, uint64_t left)
{
  struct s3_client *c = a->e->client;
  struct s3_request *r = a->r;

  SETOPT (a, CURLOPT_URL, a->url);
  /* Keys are not file paths: "a/./b" and "a//b" are distinct objects. */
  SETOPT (a, CURLOPT_PATH_AS_IS, 1L);
  SETOPT (a, CURLOPT_HTTPHEADER, a->headers);
  SETOPT (a, CURLOPT_WRITEFUNCTION, s3_response_write_cb);
  SETOPT (a, CURLOPT_WRITEDATA, a);
  SETOPT (a, CURLOPT_HEADERFUNCTION, s3_response_header_cb);
  SETOPT (a, CURLOPT_HEADERDATA, a);
  SETOPT (a, CURLOPT_ERRORBUFFER, a->curl_err);
  SETOPT (a, CURLOPT_NOSIGNAL, 1L);
  SETOPT (a, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SETOPT (a, CURLOPT_TCP_NODELAY, 1L);
  SETOPT (a, CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT (a, CURLOPT_NOPROXY, "*");
  SETOPT (a, CURLOPT_CONNECTTIMEOUT_MS,
          (long)(c->connect_timeout_ms < left ? c->connect_timeout_ms : left));
  SETOPT (a, CURLOPT_TIMEOUT_MS, (long)left);
  /* A stall (no answer, a body that stops: no byte for stall_timeout_s,
   * xferinfo_cb; or less than STALL_BYTES_PER_S over as long, curl's
   * average) is cut long before the deadline, and retried on another
   * connection.
   */
  SETOPT (a, CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES_PER_S);
  SETOPT (a, CURLOPT_LOW_SPEED_TIME, (long)c->stall_timeout_s);
  SETOPT (a, CURLOPT_NOPROGRESS, 0L);
  SETOPT (a, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  SETOPT (a, CURLOPT_XFERINFODATA, a);
  if (c->no_verify_tls)
    {
      SETOPT (a, CURLOPT_SSL_VERIFYPEER, 0L);
      SETOPT (a, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  if (c->ca_file)
    SETOPT (a, CURLOPT_CAINFO, c->ca_file);
  switch (r->method)
    {
    case S3_GET: break;
    case S3_HEAD: SETOPT (a, CURLOPT_NOBODY, 1L); break;
    case S3_PUT:
      SETOPT (a, CURLOPT_UPLOAD, 1L);
      SETOPT (a, CURLOPT_READFUNCTION, read_cb);
      SETOPT (a, CURLOPT_READDATA, a);
      SETOPT (a, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->put_len);
      break;
    }
  return 0;
}

static int
start_attempt (struct s3_engine *e, struct attempt *a)
{
  struct s3_client *c = e->client;
  struct s3_request *r = a->r;
  char *host = NULL, *path = NULL;
  uint64_t left = deadline_left_ms (c, a);
  CURLMcode mc;

  attempt_reset (a);
  if (s3_request_target (c, r, &a->url, &host, &path) == -1)
    {
      free (host);
      free (path);
      return s3bd_fail (&r->err, S3BD_ENOMEM, "out of memory");
    }
  if (sign_attempt (a, host, path) == -1)
    {
      free (host);
      free (path);
      return -1;
    }
  free (host);
  free (path);

  if (a->easy == NULL && (a->easy = curl_easy_init ()) == NULL)
    return s3bd_fail (&r->err, S3BD_ENOMEM, "curl_easy_init failed");
  curl_easy_reset (a->easy);
  if (set_options (a, left) == -1)
    return -1;
  mc = curl_multi_add_handle (e->multi, a->easy);
  if (mc != CURLM_OK)
    return s3bd_fail (&r->err, multi_errcode (mc), "curl_multi_add_handle: %s",
                      curl_multi_strerror (mc));
  r->attempts++;
  a->rnext = e->running;
  e->running = a;
  e->inflight++;
  lock (e);
  e->stats.requests++;
  if (r->attempts > 1)
    e->stats.retries++;
  unlock (e);
  return 0;
}

/* ---- After the verdict ---- */

/* Hands a finished request back to its owner. */
static void
finish (struct s3_engine *e, struct attempt *a, bool ok)
{
  struct s3_request *r = a->r;
  char what[512];

  r->rc = ok ? 0 : -1;
  if (!ok)
    {
      uint64_t ms = s3_now_ms () - a->start_ms;

      s3_request_describe (r, what, sizeof what);
      if (r->attempts > 1 || a->stopped)
        s3bd_error_prefix (
            &r->err, "%s (after %u attempt%s in %" PRIu64 " ms%s%s)", what,
            r->attempts, r->attempts == 1 ? "" : "s", ms,
            a->stopped ? ", " : "", a->stopped ? a->stopped : "");
      else
        s3bd_error_prefix (&r->err, "%s", what);
    }
  lock (e);
  if (!ok)
    e->stats.failures++;
  e->stats.bytes_in += a->written;
  if (r->method == S3_PUT)
    e->stats.bytes_out += r->put_len;
  e->outstanding--;
  unlock (e);
  r->priv = NULL;
  attempt_free (a);
  if (r->done)
    r->done (r, r->arg);
}

static void
delay_push (struct s3_engine *e, struct attempt *a)
{
  struct attempt **p = &e->delayed;

  while (*p && (*p)->ready_ms <= a->ready_ms)
    p = &(*p)->next;
  a->next = *p;
  *p = a;
  e->ndelayed++;
}

/* After an attempt judged RETRY (a->r->err says why): queues the next
 * one after its delay, and logs that, when the count, the deadline and
 * the client's retry quota allow; else returns false, and a->stopped
 * names the quota when it was what said no.
 */
static bool
retry_later (struct s3_engine *e, struct attempt *a)
{
  struct s3_client *c = e->client;
  struct s3_request *r = a->r;
  unsigned delay = retry_delay_ms (&c->retry, a->why, r->attempts, random64 ());
  unsigned cost = retry_cost (a->why);
  uint64_t now = s3_now_ms ();
  char what[512];

  if (!retry_allowed (&c->retry, r->attempts, now - a->start_ms, delay))
    return false;
  if (!retry_quota_take (&c->quota, cost))
    {
      a->stopped = "no retry: the retry quota is spent";
      return false;
    }
  a->taken += cost;
  a->ready_ms = now + delay;
  delay_push (e, a);
  if (c->log)
    {
      s3_request_describe (r, what, sizeof what);
      s3bd_logf (c->log, S3BD_LOG_DEBUG,
                 "s3bd: %s: attempt %u: %s; retry in %u ms", what, r->attempts,
                 r->err.msg, delay);
    }
  return true;
}

/* Takes the attempt that owns easy off the running list, or returns
 * NULL when none does (not an attempt of this engine: a bug).
 */
static struct attempt *
running_take (struct s3_engine *e, CURL *easy)
{
  struct attempt **p = &e->running, *a;

  while (*p && (*p)->easy != easy)
    p = &(*p)->rnext;
  if ((a = *p) == NULL)
    return NULL;
  *p = a->rnext;
  a->rnext = NULL;
  e->inflight--;
  return a;
}

static void
completed (struct s3_engine *e, CURL *easy, CURLcode cc)
{
  struct s3_client *c = e->client;
  struct attempt *a = running_take (e, easy);
  enum verdict v;
  CURLMcode mc;

  assert (a != NULL);
  if (a == NULL)
    return;
  mc = curl_multi_remove_handle (e->multi, a->easy);
  if (mc != CURLM_OK)
    {
      /* The easy handle cannot be reused while the multi handle may
       * still hold it: no retry on it, whatever the response.
       */
      s3bd_fail (&a->r->err, multi_errcode (mc), "curl_multi_remove_handle: %s",
                 curl_multi_strerror (mc));
      finish (e, a, false);
      return;
    }
  v = s3_response_judge (c, a, cc);
  if (v == RETRY && retry_later (e, a))
    return;
  if (v == DONE_OK)
    retry_quota_success (&c->quota, a->taken);
  finish (e, a, v == DONE_OK);
}

/* The multi handle failed in call: per libcurl, every transfer still in
 * it has failed.  Each is ended with that error (not retried: the fault
 * is here, not at the server) and taken out, which leaves the multi
 * handle empty and fit to take new transfers.  Requests not yet started
 * are left queued.
 */
static void
multi_failed (struct s3_engine *e, const char *call, CURLMcode mc)
{
  struct attempt *a;

  while ((a = e->running))
    {
      e->running = a->rnext;
      a->rnext = NULL;
      e->inflight--;
      /* Failing too is likely and changes nothing: attempt_free's
       * curl_easy_cleanup detaches the handle in any case.
       */
      (void)curl_multi_remove_handle (e->multi, a->easy);
      s3bd_fail (&a->r->err, multi_errcode (mc),
                 "transfer abandoned: %s failed: %s", call,
                 curl_multi_strerror (mc));
      finish (e, a, false);
    }
  assert (e->inflight == 0);
}

/* ---- The loop ---- */

static void
start_ready (struct s3_engine *e)
{
  uint64_t now = s3_now_ms ();
  struct attempt *a;

  lock (e);
  while ((a = queue_pop (&e->submitted)))
    queue_push (&e->ready, a);
  unlock (e);
  /* A retry keeps its slot while it waits: backing off lowers the
   * request rate (what SlowDown asks), and the requests holding retry
   * quota tokens stay at most max_inflight.
   */
  while (e->delayed && e->delayed->ready_ms <= now)
    {
      a = e->delayed;
      e->delayed = a->next;
      e->ndelayed--;
      if (start_attempt (e, a) == -1)
        finish (e, a, false);
    }
  while (e->inflight + e->ndelayed < e->max_inflight
         && (a = queue_pop (&e->ready)))
    if (start_attempt (e, a) == -1)
      finish (e, a, false);
}

/* Lets curl move bytes and hands on every transfer that ended. */
static void
perform (struct s3_engine *e)
{
  CURLMsg *m;
  CURLMcode mc;
  int running, queued;

  mc = curl_multi_perform (e->multi, &running);
  if (mc != CURLM_OK)
    {
      multi_failed (e, "curl_multi_perform", mc);
      return;
    }
  while ((m = curl_multi_info_read (e->multi, &queued)))
    if (m->msg == CURLMSG_DONE)
      completed (e, m->easy_handle, m->data.result);
}

/* Instead of a poll that failed: a nap, so that the loop cannot spin. */
static void
nap_ms (int ms)
{
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

size_t
s3_engine_run (struct s3_engine *e, int timeout_ms)
{
  uint64_t deadline
      = s3_now_ms () + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
  size_t left;
  bool had_work, woken;

  lock (e);
  had_work = e->outstanding > 0;
  unlock (e);
  for (;;)
    {
      long curl_wait = -1;
      uint64_t now;
      CURLMcode mc;
      bool wakeup_lost;
      int wait;

      start_ready (e);
      perform (e);
      /* Completions may have freed slots or queued retries. */
      start_ready (e);

      lock (e);
      left = e->outstanding;
      woken = e->woken;
      e->woken = false;
      wakeup_lost = e->wakeup_lost;
      unlock (e);
      now = s3_now_ms ();
      /* Idle on entry: wait for work (a submit wakes the poll) rather
       * than return at once, so that a thread that runs the engine in a
       * loop sleeps when there is nothing to do.
       */
      if (left)
        had_work = true;
      if ((left == 0 && had_work) || woken || now >= deadline)
        return left;

      wait = (int)(deadline - now);
      if (e->delayed && e->delayed->ready_ms - now < (uint64_t)wait)
        wait = e->delayed->ready_ms > now ? (int)(e->delayed->ready_ms - now)
                                          : 0;
      mc = curl_multi_timeout (e->multi, &curl_wait);
      if (mc != CURLM_OK)
        {
          /* Without curl's timers a transfer's timeout might never
           * fire.  Once they are failed, no transfer needs a timer.
           */
          multi_failed (e, "curl_multi_timeout", mc);
          curl_wait = -1;
        }
      if (curl_wait >= 0 && curl_wait < wait)
        wait = (int)curl_wait;
      if (wakeup_lost && wait > WAKEUP_LOST_MS)
        wait = WAKEUP_LOST_MS;
      if (wait > 0)
        {
          mc = curl_multi_poll (e->multi, NULL, 0, wait, NULL);
          if (mc != CURLM_OK)
            {
              multi_failed (e, "curl_multi_poll", mc);
              nap_ms (wait);
            }
        }
    }
}

int
s3_perform (struct s3_client *c, struct s3_request **reqs, size_t n)
{
  struct s3_engine *e = s3_client_engine (c);
  int ret = 0;

  if (e == NULL)
    {
      for (size_t i = 0; i < n; i++)
        reqs[i]->rc = s3bd_fail (&reqs[i]->err, S3BD_ENOMEM,
                                 "cannot create the transfer engine");
      return -1;
    }
  for (size_t i = 0; i < n; i++)
    s3_engine_submit (e, reqs[i]);
  while (s3_engine_run (e, 60000) > 0)
    ;
  for (size_t i = 0; i < n; i++)
    if (reqs[i]->rc)
      ret = -1;
  return ret;
}

void
s3_request_release (struct s3_request *r)
{
  free (r->body);
  r->body = NULL;
  r->body_len = 0;
  assert (r->priv == NULL);
}
