/* s3bd: the transfer engine.
 *
 * How it works.  An engine owns one curl multi handle, whose connection
 * cache keeps connections to the endpoint alive between requests.  Any
 * thread may submit a request (s3_engine_submit puts it on the submitted
 * list under the lock and wakes the multi handle); exactly one thread runs
 * the engine (s3_engine_run), which:
 *   1. moves submitted requests to the ready queue, and delayed retries
 *      whose time has come;
 *   2. starts ready requests while fewer than max_inflight are running:
 *      each attempt is signed afresh (new date, current credentials);
 *   3. lets curl move bytes: a GET body goes straight into the caller's
 *      buffer, never past its end (the body and header callbacks are in
 *      response.c);
 *   4. judges each finished attempt (s3_response_judge, response.c):
 *      success; a transient failure that the retry policy allows (queued
 *      again after a jittered delay); or a final error, described once in
 *      the request's err.  Then it calls the request's done callback,
 *      after which it never touches the request.
 *
 * This file has the queues, starting attempts and the loop; response.c
 * reads responses and decides what they mean; engineint.h is what the
 * two share.
 *
 * Lock: e->lock protects submitted, outstanding and stats.  Everything
 * else belongs to the engine's thread.  No lock is held while curl runs
 * or while a done callback runs.
 */
#include <assert.h>
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
  struct s3_stats stats;

  /* Engine thread only. */
  struct queue ready;
  struct attempt *delayed; /* sorted by ready_ms */
  struct attempt *running; /* added to the multi handle */
  unsigned inflight;       /* length of running */
};

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

int
s3_engine_new (struct s3_client *c, unsigned max_inflight,
               struct s3_engine **out, struct s3bd_error *err)
{
  struct s3_engine *e = calloc (1, sizeof *e);

  *out = NULL;
  if (e == NULL)
    return s3bd_fail (err, S3BD_ENOMEM, "out of memory");
  e->client = c;
  e->max_inflight = max_inflight ? max_inflight : c->max_connections;
  e->multi = curl_multi_init ();
  if (e->multi == NULL)
    {
      free (e);
      return s3bd_fail (err, S3BD_ENOMEM, "curl_multi_init failed");
    }
  /* One connection per transfer in flight, all kept alive.  HTTP/1.1:
   * S3 serves ranged GETs best over many plain connections.
   */
  curl_multi_setopt (e->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                     (long)e->max_inflight);
  curl_multi_setopt (e->multi, CURLMOPT_MAXCONNECTS, (long)e->max_inflight);
  pthread_mutex_init (&e->lock, NULL);
  *out = e;
  return 0;
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
  a->body_ok = 0;
  a->have_range = false;
  a->range_first = a->range_last = a->range_total = 0;
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

  if (e == NULL)
    return;
  /* Requests still queued are abandoned; their owners are going away
   * with the engine.
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
      curl_multi_remove_handle (e->multi, a->easy);
      attempt_free (a);
    }
  if (e->multi)
    curl_multi_cleanup (e->multi);
  pthread_mutex_destroy (&e->lock);
  free (e);
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
  pthread_mutex_lock (&e->lock);
  queue_push (&e->submitted, a);
  e->outstanding++;
  pthread_mutex_unlock (&e->lock);
  curl_multi_wakeup (e->multi);
}

void
s3_engine_wakeup (struct s3_engine *e)
{
  curl_multi_wakeup (e->multi);
}

void
s3_engine_stats (struct s3_engine *e, struct s3_stats *out)
{
  pthread_mutex_lock (&e->lock);
  *out = e->stats;
  pthread_mutex_unlock (&e->lock);
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

/* What is left of the request's retry budget (timeout=), at least 1 ms.
 * The policy only decides whether to start another attempt; it is this
 * that keeps an attempt from outliving the budget by waiting on a server
 * that accepts connections and never answers (a frozen process: the
 * kernel still completes the handshake), for up to low_speed_time_s.
 */
static uint64_t
budget_left_ms (const struct s3_client *c, const struct attempt *a)
{
  uint64_t spent = s3_now_ms () - a->start_ms;

  return spent + 1 < c->retry.budget_ms ? c->retry.budget_ms - spent : 1;
}

static int
start_attempt (struct s3_engine *e, struct attempt *a)
{
  struct s3_client *c = e->client;
  struct s3_request *r = a->r;
  char *host = NULL, *path = NULL;
  uint64_t left = budget_left_ms (c, a);
  CURL *h;

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
  h = a->easy;
  curl_easy_reset (h);
  curl_easy_setopt (h, CURLOPT_URL, a->url);
  /* Keys are not file paths: "a/./b" and "a//b" are distinct objects. */
  curl_easy_setopt (h, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt (h, CURLOPT_HTTPHEADER, a->headers);
  curl_easy_setopt (h, CURLOPT_PRIVATE, (char *)a);
  curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, s3_response_write_cb);
  curl_easy_setopt (h, CURLOPT_WRITEDATA, a);
  curl_easy_setopt (h, CURLOPT_HEADERFUNCTION, s3_response_header_cb);
  curl_easy_setopt (h, CURLOPT_HEADERDATA, a);
  curl_easy_setopt (h, CURLOPT_ERRORBUFFER, a->curl_err);
  curl_easy_setopt (h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt (h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt (h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt (h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt (
      h, CURLOPT_CONNECTTIMEOUT_MS,
      (long)(c->connect_timeout_ms < left ? c->connect_timeout_ms : left));
  if (c->request_timeout_ms)
    curl_easy_setopt (h, CURLOPT_TIMEOUT_MS, (long)c->request_timeout_ms);
  if (c->low_speed_time_s)
    {
      /* A stall ends the attempt when the budget runs out (curl counts
       * whole seconds), but a transfer still moving data is never cut:
       * a large object may take longer than the budget to arrive.
       */
      uint64_t stall_s = (left + 999) / 1000;

      if (stall_s > c->low_speed_time_s)
        stall_s = c->low_speed_time_s;
      curl_easy_setopt (h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
      curl_easy_setopt (h, CURLOPT_LOW_SPEED_TIME, (long)stall_s);
    }
  if (c->no_verify_tls)
    {
      curl_easy_setopt (h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt (h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  if (c->ca_file)
    curl_easy_setopt (h, CURLOPT_CAINFO, c->ca_file);
  switch (r->method)
    {
    case S3_GET: break;
    case S3_HEAD: curl_easy_setopt (h, CURLOPT_NOBODY, 1L); break;
    case S3_PUT:
      curl_easy_setopt (h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt (h, CURLOPT_READFUNCTION, read_cb);
      curl_easy_setopt (h, CURLOPT_READDATA, a);
      curl_easy_setopt (h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->put_len);
      break;
    }
  if (curl_multi_add_handle (e->multi, h) != CURLM_OK)
    return s3bd_fail (&r->err, S3BD_ENOMEM, "curl_multi_add_handle failed");
  r->attempts++;
  a->rnext = e->running;
  e->running = a;
  e->inflight++;
  pthread_mutex_lock (&e->lock);
  e->stats.requests++;
  if (r->attempts > 1)
    e->stats.retries++;
  pthread_mutex_unlock (&e->lock);
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
      if (r->attempts > 1)
        s3bd_error_prefix (&r->err, "%s (after %u attempts in %" PRIu64 " ms)",
                           what, r->attempts, ms);
      else
        s3bd_error_prefix (&r->err, "%s", what);
    }
  pthread_mutex_lock (&e->lock);
  if (!ok)
    e->stats.failures++;
  e->stats.bytes_in += a->written;
  if (r->method == S3_PUT)
    e->stats.bytes_out += r->put_len;
  e->outstanding--;
  pthread_mutex_unlock (&e->lock);
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
}

static void
completed (struct s3_engine *e, struct attempt *a, CURLcode cc)
{
  struct s3_client *c = e->client;
  struct attempt **p = &e->running;
  enum verdict v;

  while (*p != a)
    p = &(*p)->rnext;
  *p = a->rnext;
  curl_multi_remove_handle (e->multi, a->easy);
  e->inflight--;
  v = s3_response_judge (c, a, cc);
  if (v == RETRY)
    {
      unsigned delay = retry_delay_ms (&c->retry, a->r->attempts, random64 ());
      uint64_t now = s3_now_ms ();

      if (retry_allowed (&c->retry, a->r->attempts, now - a->start_ms, delay))
        {
          a->ready_ms = now + delay;
          delay_push (e, a);
          return;
        }
    }
  finish (e, a, v == DONE_OK);
}

/* ---- The loop ---- */

static void
start_ready (struct s3_engine *e)
{
  uint64_t now = s3_now_ms ();
  struct attempt *a;

  pthread_mutex_lock (&e->lock);
  while ((a = queue_pop (&e->submitted)))
    queue_push (&e->ready, a);
  pthread_mutex_unlock (&e->lock);
  while (e->delayed && e->delayed->ready_ms <= now)
    {
      a = e->delayed;
      e->delayed = a->next;
      queue_push (&e->ready, a);
    }
  while (e->inflight < e->max_inflight && (a = queue_pop (&e->ready)))
    if (start_attempt (e, a) == -1)
      finish (e, a, false);
}

size_t
s3_engine_run (struct s3_engine *e, int timeout_ms)
{
  uint64_t deadline
      = s3_now_ms () + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
  size_t left;
  bool had_work;

  pthread_mutex_lock (&e->lock);
  had_work = e->outstanding > 0;
  pthread_mutex_unlock (&e->lock);
  for (;;)
    {
      CURLMsg *m;
      int running, queued;
      long curl_wait = -1;
      uint64_t now;
      int wait;

      start_ready (e);
      curl_multi_perform (e->multi, &running);
      while ((m = curl_multi_info_read (e->multi, &queued)))
        if (m->msg == CURLMSG_DONE)
          {
            struct attempt *a = NULL;

            curl_easy_getinfo (m->easy_handle, CURLINFO_PRIVATE, (char **)&a);
            completed (e, a, m->data.result);
          }
      /* Completions may have freed slots or queued retries. */
      start_ready (e);

      pthread_mutex_lock (&e->lock);
      left = e->outstanding;
      pthread_mutex_unlock (&e->lock);
      now = s3_now_ms ();
      /* Idle on entry: wait for work (a submit wakes the poll) rather
       * than return at once, so that a thread that runs the engine in a
       * loop sleeps when there is nothing to do.
       */
      if (left)
        had_work = true;
      if ((left == 0 && had_work) || now >= deadline)
        return left;

      wait = (int)(deadline - now);
      if (e->delayed && e->delayed->ready_ms - now < (uint64_t)wait)
        wait = e->delayed->ready_ms > now ? (int)(e->delayed->ready_ms - now)
                                          : 0;
      curl_multi_timeout (e->multi, &curl_wait);
      if (curl_wait >= 0 && curl_wait < wait)
        wait = (int)curl_wait;
      if (wait > 0)
        curl_multi_poll (e->multi, NULL, 0, wait, NULL);
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
