/* Unit tests of lib/s3/engine.c: the HTTP handling of the transfer
 * engine against a tiny HTTP/1.1 server of the test's own, in a thread
 * on 127.0.0.1 at a port the kernel picks, that answers each request
 * with the next response of a script: a good 206, a 200 for a ranged
 * GET, a wrong, missing or garbage Content-Range or total (each retried),
 * a short body and a close, a 412, a 503 then a 206, keep-alive reuse, no
 * answer at all (a stall, cut and retried), a body trickled slower than
 * the deadline allows, a dead endpoint that spends the retry quota.
 * Checked: what the engine hands out, its error codes and messages, its
 * stats, its log lines and its timing against the deadline.
 *
 * Failures of the multi handle cannot be caused from outside, so the
 * test interposes curl_multi_perform, curl_multi_poll and
 * curl_multi_wakeup (its definitions win over libcurl's at link time)
 * and makes them fail on demand.
 *
 * Nothing here contacts anything but 127.0.0.1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "s3bd/s3.h"

/* ---- Failing libcurl on demand ---- */

static atomic_bool fail_perform, fail_poll, fail_wakeup;
static atomic_int poll_calls;
static CURLMcode (*real_perform) (CURLM *, int *);
static CURLMcode (*real_poll) (CURLM *, struct curl_waitfd[], unsigned, int,
                               int *);
static CURLMcode (*real_wakeup) (CURLM *);

CURLMcode
curl_multi_perform (CURLM *m, int *running)
{
  if (atomic_load (&fail_perform))
    return CURLM_INTERNAL_ERROR;
  return real_perform (m, running);
}

CURLMcode
curl_multi_poll (CURLM *m, struct curl_waitfd extra[], unsigned n, int ms,
                 int *ret)
{
  atomic_fetch_add (&poll_calls, 1);
  if (atomic_load (&fail_poll))
    return CURLM_UNRECOVERABLE_POLL;
  return real_poll (m, extra, n, ms, ret);
}

CURLMcode
curl_multi_wakeup (CURLM *m)
{
  if (atomic_load (&fail_wakeup))
    return CURLM_WAKEUP_FAILURE;
  return real_wakeup (m);
}

/* ---- The server ---- */

struct step
{
  const char *resp; /* sent as is; NULL: never answer */
  bool close;       /* close the connection after it */
  size_t trickle;   /* > 0: sent this many bytes every TRICKLE_MS */
};

#define TRICKLE_MS 20

struct seen
{
  char line[256]; /* "GET /bkt/key HTTP/1.1" */
  char range[64];
  char if_match[96];
  int conn; /* which accepted connection, from 0 */
};

#define MAX_CONNS 8
#define MAX_SEEN 16

struct conn
{
  int fd;
  int id;
  size_t len;
  char buf[16384];
  /* A response being trickled: no other request is read meanwhile. */
  const char *out;
  size_t out_len, out_off, out_chunk;
  uint64_t out_next_ms;
};

static uint64_t
mono_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sends the next piece of a trickled response when its time has come;
 * false: the client has gone, close c.
 */
static bool
trickle (struct conn *c)
{
  size_t n;
  ssize_t k;

  if (c->out == NULL || mono_ms () < c->out_next_ms)
    return true;
  n = c->out_len - c->out_off;
  if (n > c->out_chunk)
    n = c->out_chunk;
  k = send (c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
  if (k <= 0)
    return false;
  c->out_off += (size_t)k;
  c->out_next_ms += TRICKLE_MS;
  if (c->out_off == c->out_len)
    c->out = NULL;
  return true;
}

static struct server
{
  int lfd;
  int port;
  pthread_t thread;
  atomic_bool stop;
  pthread_mutex_t lock;
  /* protects: */
  const struct step *steps;
  size_t nsteps, next;
  struct seen seen[MAX_SEEN];
  size_t nseen;
  int accepted;
} srv;

static void
header_value (const char *req, const char *name, char *out, size_t outsz)
{
  size_t n = strlen (name);
  const char *p = strstr (req, "\r\n");

  out[0] = '\0';
  while (p && p[2] != '\r')
    {
      const char *line = p + 2, *end = strstr (line, "\r\n");

      if (end && strncasecmp (line, name, n) == 0 && line[n] == ':')
        {
          const char *v = line + n + 1;

          while (*v == ' ')
            v++;
          snprintf (out, outsz, "%.*s", (int)(end - v), v);
          return;
        }
      p = end;
    }
}

static void
send_all (int fd, const char *s, size_t n)
{
  while (n > 0)
    {
      ssize_t k = send (fd, s, n, MSG_NOSIGNAL);

      if (k <= 0)
        return;
      s += k;
      n -= (size_t)k;
    }
}

/* Answers every whole request in c's buffer; false: close c. */
static bool
serve_requests (struct conn *c)
{
  char *end;

  while (c->out == NULL && (end = strstr (c->buf, "\r\n\r\n")))
    {
      size_t reqlen = (size_t)(end + 4 - c->buf);
      const struct step *st = NULL;
      struct seen *sn = NULL;

      pthread_mutex_lock (&srv.lock);
      if (srv.nseen < MAX_SEEN)
        sn = &srv.seen[srv.nseen++];
      if (srv.next < srv.nsteps)
        st = &srv.steps[srv.next++];
      pthread_mutex_unlock (&srv.lock);
      if (sn)
        {
          snprintf (sn->line, sizeof sn->line, "%.*s",
                    (int)strcspn (c->buf, "\r"), c->buf);
          header_value (c->buf, "Range", sn->range, sizeof sn->range);
          header_value (c->buf, "If-Match", sn->if_match, sizeof sn->if_match);
          sn->conn = c->id;
        }
      memmove (c->buf, c->buf + reqlen, c->len - reqlen + 1);
      c->len -= reqlen;
      if (st == NULL)
        {
          static const char none[] = "HTTP/1.1 599 Not In The Script\r\n"
                                     "Content-Length: 0\r\n\r\n";
          send_all (c->fd, none, sizeof none - 1);
          continue;
        }
      if (st->resp == NULL)
        continue; /* hold: no answer, ever */
      if (st->trickle)
        {
          c->out = st->resp;
          c->out_len = strlen (st->resp);
          c->out_off = 0;
          c->out_chunk = st->trickle;
          c->out_next_ms = mono_ms ();
          continue;
        }
      send_all (c->fd, st->resp, strlen (st->resp));
      if (st->close)
        return false;
    }
  return true;
}

static void *
server_thread (void *arg)
{
  struct conn conns[MAX_CONNS];
  size_t nconns = 0;

  (void)arg;
  while (!atomic_load (&srv.stop))
    {
      struct pollfd pfd[MAX_CONNS + 1];

      pfd[0] = (struct pollfd){ .fd = srv.lfd, .events = POLLIN };
      for (size_t i = 0; i < nconns; i++)
        pfd[i + 1] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
      int np = poll (pfd, nconns + 1, TRICKLE_MS / 2);

      for (size_t i = nconns; i-- > 0;)
        {
          struct conn *c = &conns[i];
          ssize_t k;

          if (!trickle (c))
            {
              close (c->fd);
              conns[i] = conns[--nconns];
              continue;
            }
          if (np <= 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
          k = recv (c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
          if (k > 0)
            {
              c->len += (size_t)k;
              c->buf[c->len] = '\0';
            }
          if (k <= 0 || !serve_requests (c) || c->len == sizeof c->buf - 1)
            {
              close (c->fd);
              conns[i] = conns[--nconns];
            }
        }
      if (np > 0 && (pfd[0].revents & POLLIN) && nconns < MAX_CONNS)
        {
          int fd = accept (srv.lfd, NULL, NULL);

          if (fd >= 0)
            {
              pthread_mutex_lock (&srv.lock);
              conns[nconns].id = srv.accepted++;
              pthread_mutex_unlock (&srv.lock);
              conns[nconns].fd = fd;
              conns[nconns].len = 0;
              conns[nconns].buf[0] = '\0';
              conns[nconns].out = NULL;
              nconns++;
            }
        }
    }
  for (size_t i = 0; i < nconns; i++)
    close (conns[i].fd);
  return NULL;
}

static void
server_script (const struct step *steps, size_t n)
{
  pthread_mutex_lock (&srv.lock);
  srv.steps = steps;
  srv.nsteps = n;
  srv.next = 0;
  srv.nseen = 0;
  memset (srv.seen, 0, sizeof srv.seen);
  pthread_mutex_unlock (&srv.lock);
}

#define SCRIPT(s) server_script ((s), sizeof (s) / sizeof (s)[0])

static size_t
server_nseen (void)
{
  size_t n;

  pthread_mutex_lock (&srv.lock);
  n = srv.nseen;
  pthread_mutex_unlock (&srv.lock);
  return n;
}

/* ---- Fixture: a server and a client of it, per test ---- */

static struct s3_client *client;

static struct s3_client *client;

static char endpoint[64];

/* The fixture's settings: 3 attempts, millisecond delays. */
static struct s3_config
base_config (void)
{
  struct s3_config cfg = { 0 };

  cfg.endpoint = endpoint;
  cfg.region = "us-east-1";
  cfg.addressing = S3_ADDR_PATH;
  cfg.creds.access_key = "AKIDTEST";
  cfg.creds.secret_key = "secret";
  cfg.connect_timeout_ms = 2000;
  cfg.max_attempts = 3;
  cfg.retry_base_ms = 1;
  cfg.retry_throttle_base_ms = 1;
  cfg.retry_cap_ms = 5;
  cfg.retry_budget_ms = 20000;
  cfg.max_connections = 4;
  return cfg;
}

/* Replaces the fixture's client with one of cfg. */
static void
use_client (const struct s3_config *cfg)
{
  struct s3bd_error err = { 0 };

  s3_client_free (client);
  if (s3_client_new (cfg, &client, &err) == -1)
    fail_msg ("s3_client_new: %s", err.msg);
}

static int
setup (void **state)
{
  struct sockaddr_in sa = { .sin_family = AF_INET };
  socklen_t salen = sizeof sa;
  struct s3_config cfg;
  struct s3bd_error err = { 0 };

  (void)state;
  memset (&srv, 0, sizeof srv);
  pthread_mutex_init (&srv.lock, NULL);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  srv.lfd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (srv.lfd == -1 || bind (srv.lfd, (struct sockaddr *)&sa, sizeof sa) == -1
      || listen (srv.lfd, 16) == -1
      || getsockname (srv.lfd, (struct sockaddr *)&sa, &salen) == -1)
    {
      perror ("test server");
      return -1;
    }
  srv.port = ntohs (sa.sin_port);
  if (pthread_create (&srv.thread, NULL, server_thread, NULL) != 0)
    return -1;

  snprintf (endpoint, sizeof endpoint, "http://127.0.0.1:%d", srv.port);
  cfg = base_config ();
  if (s3_client_new (&cfg, &client, &err) == -1)
    {
      fprintf (stderr, "s3_client_new: %s\n", err.msg);
      return -1;
    }
  return 0;
}

static int
teardown (void **state)
{
  (void)state;
  s3_client_free (client);
  client = NULL;
  atomic_store (&srv.stop, true);
  pthread_join (srv.thread, NULL);
  close (srv.lfd);
  pthread_mutex_destroy (&srv.lock);
  atomic_store (&fail_perform, false);
  atomic_store (&fail_poll, false);
  atomic_store (&fail_wakeup, false);
  return 0;
}

static struct s3_stats
stats (void)
{
  struct s3_stats s;

  s3_engine_stats (s3_client_engine (client), &s);
  return s;
}

/* A blocking ranged GET of [off, off+len) of s3://bkt/key. */
static int
get (struct s3_request *r, uint64_t off, uint64_t len, const char *etag,
     void *buf)
{
  s3_request_get_range (r, "bkt", "key", off, len, etag, buf);
  return s3_perform (client, &r, 1);
}

static void
assert_error (const struct s3_request *r, enum s3bd_errcode code,
              const char *part)
{
  if (r->rc != -1 || r->err.code != code || strstr (r->err.msg, part) == NULL)
    fail_msg ("expected rc -1, %s with \"%s\"; got rc %d, %s: %s",
              s3bd_errname (code), part, r->rc, s3bd_errname (r->err.code),
              r->err.msg);
}

static uint64_t
elapsed_ms (uint64_t t0)
{
  return s3_now_ms () - t0;
}

#define GOOD_206_10_19                                                         \
  "HTTP/1.1 206 Partial Content\r\n"                                           \
  "Content-Range: bytes 10-19/100\r\n"                                         \
  "Content-Length: 10\r\n"                                                     \
  "ETag: \"e1\"\r\n"                                                           \
  "\r\n"                                                                       \
  "ABCDEFGHIJ"

#define GOOD_206_0_9                                                           \
  "HTTP/1.1 206 Partial Content\r\n"                                           \
  "Content-Range: bytes 0-9/100\r\n"                                           \
  "Content-Length: 10\r\n"                                                     \
  "\r\n"                                                                       \
  "0123456789"

/* ---- Responses ---- */

static void
test_good_206 (void **state)
{
  static const struct step script[] = { { GOOD_206_10_19, false, 0 } };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_int_equal (r.rc, 0);
  assert_memory_equal (buf, "ABCDEFGHIJ", 10);
  assert_int_equal (r.status, 206);
  assert_int_equal (r.attempts, 1);
  assert_int_equal (r.object_size, 100);
  assert_string_equal (r.etag, "\"e1\"");
  assert_int_equal (server_nseen (), 1);
  assert_string_equal (srv.seen[0].line, "GET /bkt/key HTTP/1.1");
  assert_string_equal (srv.seen[0].range, "bytes=10-19");
  assert_string_equal (srv.seen[0].if_match, "");
  s = stats ();
  assert_int_equal (s.requests, 1);
  assert_int_equal (s.retries, 0);
  assert_int_equal (s.failures, 0);
  assert_int_equal (s.bytes_in, 10);
  s3_request_release (&r);
}

/* Requests one after another share one connection. */
static void
test_keepalive_reuse (void **state)
{
  static const struct step script[] = {
    { GOOD_206_10_19, false, 0 },
    { GOOD_206_0_9, false, 0 },
    { GOOD_206_10_19, false, 0 },
  };
  struct s3_request r;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_int_equal (server_nseen (), 3);
  assert_int_equal (srv.accepted, 1);
  assert_int_equal (srv.seen[2].conn, 0);
  assert_int_equal (stats ().requests, 3);
}

/* A 200 with the whole object for a ranged GET: right only when the
 * object is the range.  Otherwise a broken answer: retried, and the
 * bytes handed out are those of the good answer after it.
 */
static void
test_200_for_range (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false, 0 },
    { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false, 0 },
    { GOOD_206_10_19, false, 0 },
    { "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
      "0123456789abcdefghijABCDEFGHIJ",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
  };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];

  (void)state;
  SCRIPT (script);
  /* The object is exactly the range. */
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (r.status, 200);

  /* The right length, the wrong bytes: retried. */
  memset (buf, 'Z', sizeof buf);
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_memory_equal (buf, "ABCDEFGHIJ", 10);
  assert_int_equal (r.attempts, 2);
  assert_int_equal (r.status, 206);

  /* More than asked for: stopped at its first byte, retried. */
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_memory_equal (buf, "ABCDEFGHIJ", 10);
  assert_int_equal (r.attempts, 2);

  s = stats ();
  assert_int_equal (s.requests, 5);
  assert_int_equal (s.retries, 2);
  assert_int_equal (s.failures, 0);
}

/* A proxy that always answers 200: the retries end with the reason. */
static void
test_200_for_range_every_time (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
      "0123456789abcdefghijABCDEFGHIJ",
      false, 0 },
    { "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
      "0123456789abcdefghijABCDEFGHIJ",
      false, 0 },
    { "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
      "0123456789abcdefghijABCDEFGHIJ",
      false, 0 },
  };
  struct s3_request r;
  char buf[10];

  (void)state;
  SCRIPT (script);
  memset (buf, 'Z', sizeof buf);
  assert_int_equal (get (&r, 10, 10, NULL, buf), -1);
  assert_error (&r, S3BD_EPROTO,
                "GET s3://bkt/key bytes 10-19 (after 3 attempts in ");
  assert_error (&r, S3BD_EPROTO,
                "ms): server ignored the range (HTTP 200, 30 bytes)");
  assert_memory_equal (buf, "ZZZZZZZZZZ", 10);
  assert_int_equal (stats ().failures, 1);
}

/* Shifted, missing and garbage Content-Range, and a wrong total: each
 * retried, and the good answer after it is what is handed out.
 */
static void
test_bad_content_range (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"
      "Content-Length: 10\r\n\r\n0123456789",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
    { "HTTP/1.1 206 Partial Content\r\n"
      "Content-Length: 10\r\n\r\n0123456789",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
    { "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ten-19/100\r\n"
      "Content-Length: 10\r\n\r\n0123456789",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
    { "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/99\r\n"
      "Content-Length: 10\r\n\r\n0123456789",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
  };
  struct s3_request r;
  char buf[10];

  (void)state;
  SCRIPT (script);
  for (int i = 0; i < 4; i++)
    {
      memset (buf, 'Z', sizeof buf);
      s3_request_get_range (&r, "bkt", "key", 10, 10, NULL, buf);
      r.expect_size = 100;
      struct s3_request *rp = &r;
      assert_int_equal (s3_perform (client, &rp, 1), 0);
      assert_memory_equal (buf, "ABCDEFGHIJ", 10);
      assert_int_equal (r.attempts, 2);
    }
  assert_int_equal (server_nseen (), 8);
  assert_int_equal (stats ().retries, 4);
  assert_int_equal (stats ().failures, 0);
}

/* When they never clear, the error says what was wrong: "garbage" for
 * a Content-Range that does not parse.
 */
static void
test_bad_content_range_every_time (void **state)
{
#define GARBAGE                                                                \
  {                                                                            \
    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ten-19/100\r\n"      \
    "Content-Length: 10\r\n\r\n0123456789",                                    \
        false, 0                                                               \
  }
#define NONE                                                                   \
  {                                                                            \
    "HTTP/1.1 206 Partial Content\r\n"                                         \
    "Content-Length: 10\r\n\r\n0123456789",                                    \
        false, 0                                                               \
  }
  static const struct step script[]
      = { GARBAGE, GARBAGE, GARBAGE, NONE, NONE, NONE };
#undef GARBAGE
#undef NONE
  struct s3_request r;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 10, 10, NULL, buf), -1);
  assert_error (&r, S3BD_EPROTO,
                "garbage Content-Range in the response: asked for bytes "
                "10-19, got 'bytes ten-19/100'");
  assert_int_equal (r.attempts, 3);
  assert_int_equal (get (&r, 10, 10, NULL, buf), -1);
  assert_error (&r, S3BD_EPROTO, "asked for bytes 10-19, got none");
  assert_int_equal (stats ().failures, 2);
}

#define SHORT_206_0_9                                                          \
  "HTTP/1.1 206 Partial Content\r\n"                                           \
  "Content-Range: bytes 0-9/100\r\n"                                           \
  "Content-Length: 10\r\n"                                                     \
  "\r\n"                                                                       \
  "01234"

/* A body cut short by a close is retried, and the retry's bytes are the
 * ones handed out.
 */
static void
test_short_body_then_close (void **state)
{
  static const struct step script[] = {
    { SHORT_206_0_9, true, 0 },
    { GOOD_206_0_9, false, 0 },
  };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];

  (void)state;
  memset (buf, 'Z', sizeof buf);
  SCRIPT (script);
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (r.attempts, 2);
  assert_int_equal (server_nseen (), 2);
  assert_int_equal (srv.accepted, 2);
  s = stats ();
  assert_int_equal (s.requests, 2);
  assert_int_equal (s.retries, 1);
  assert_int_equal (s.failures, 0);
}

static void
test_short_body_every_time (void **state)
{
  static const struct step script[] = {
    { SHORT_206_0_9, true, 0 },
    { SHORT_206_0_9, true, 0 },
    { SHORT_206_0_9, true, 0 },
    { GOOD_206_0_9, false, 0 }, /* never reached: max_attempts 3 */
  };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 0, 10, NULL, buf), -1);
  assert_error (&r, S3BD_ENET, "GET s3://bkt/key bytes 0-9 (after 3 attempts");
  assert_error (&r, S3BD_ENET, "5 bytes remaining");
  assert_int_equal (r.attempts, 3);
  assert_int_equal (server_nseen (), 3);
  s = stats ();
  assert_int_equal (s.requests, 3);
  assert_int_equal (s.retries, 2);
  assert_int_equal (s.failures, 1);
}

static void
test_if_match_412 (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/xml\r\n"
      "Content-Length: 67\r\n\r\n"
      "<Error><Code>PreconditionFailed</Code><Message>no</Message></Error>",
      false, 0 },
  };
  struct s3_request r;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 0, 10, "\"etag-1\"", buf), -1);
  assert_error (&r, S3BD_ECHANGED,
                "GET s3://bkt/key bytes 0-9: object changed since it was "
                "indexed: its ETag is no longer \"etag-1\" (HTTP 412)");
  assert_int_equal (r.err.http_status, 412);
  assert_string_equal (r.err.s3_code, "PreconditionFailed");
  assert_int_equal (r.attempts, 1);
  assert_string_equal (srv.seen[0].if_match, "\"etag-1\"");
  assert_int_equal (stats ().retries, 0);
}

/* A 503 is retried on the same connection; the 206 after it is used. */
static void
test_503_then_206 (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 503 Slow Down\r\nContent-Length: 58\r\n\r\n"
      "<Error><Code>SlowDown</Code><Message>x</Message></Error>\r\n",
      false, 0 },
    { GOOD_206_10_19, false, 0 },
  };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];

  (void)state;
  SCRIPT (script);
  assert_int_equal (get (&r, 10, 10, NULL, buf), 0);
  assert_memory_equal (buf, "ABCDEFGHIJ", 10);
  assert_int_equal (r.attempts, 2);
  assert_int_equal (r.status, 206);
  assert_int_equal (server_nseen (), 2);
  assert_string_equal (srv.seen[1].range, "bytes=10-19");
  assert_int_equal (srv.accepted, 1);
  s = stats ();
  assert_int_equal (s.requests, 2);
  assert_int_equal (s.retries, 1);
  assert_int_equal (s.failures, 0);
}

/* ---- Deadlines, stalls, the quota, the log ---- */

/* A server that takes the request and never answers: the attempt is cut
 * after stall-timeout and retried on a new connection, which answers.
 */
static void
test_stall_is_retried (void **state)
{
  static const struct step script[] = {
    { NULL, false, 0 }, /* hold */
    { GOOD_206_0_9, false, 0 },
  };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  char buf[10];
  uint64_t t0, ms;

  (void)state;
  cfg.stall_timeout_s = 1;
  use_client (&cfg);
  SCRIPT (script);
  t0 = s3_now_ms ();
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  ms = elapsed_ms (t0);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (r.attempts, 2);
  assert_int_equal (srv.accepted, 2);
  /* curl counts the stall in whole seconds: 1 to 2 s. */
  assert_true (ms >= 900 && ms < 3500);
}

/* A body that stops half way, the connection kept open: the engine's
 * own clock ends the attempt stall-timeout after the last byte (curl's
 * low-speed limit, which averages over 5 s, would take seconds more),
 * and the retry's bytes are the ones handed out.
 */
static void
test_stall_mid_body_is_retried (void **state)
{
  static const struct step script[] = {
    { "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\n"
      "Content-Length: 10\r\n\r\n01234",
      false, 0 },
    { GOOD_206_0_9, false, 0 },
  };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  char buf[10];
  uint64_t t0, ms;

  (void)state;
  cfg.stall_timeout_s = 1;
  use_client (&cfg);
  SCRIPT (script);
  memset (buf, 'Z', sizeof buf);
  t0 = s3_now_ms ();
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  ms = elapsed_ms (t0);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (r.attempts, 2);
  assert_true (ms >= 900 && ms < 2500);
}

/* A server that sends a body slowly (32 KB/s, 30 times
 * STALL_BYTES_PER_S): the request's deadline ends it, not the body's end
 * (200000 bytes: about 6 s).  No byte is handed out.  The stall limit
 * (3 s) is longer than the deadline (1.5 s), so that a loaded machine
 * pausing the server thread cannot turn the trickle into a stall and a
 * retry: CI once saw exactly that with a 1 s limit.
 */
static void
test_trickle_ends_at_deadline (void **state)
{
  static char resp[256 + 200000];
  const struct step script[] = { { resp, false, 640 } };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  static char buf[200000];
  int n;
  uint64_t t0, ms;

  (void)state;
  n = snprintf (resp, 256,
                "HTTP/1.1 206 Partial Content\r\n"
                "Content-Range: bytes 0-199999/200000\r\n"
                "Content-Length: 200000\r\n\r\n");
  memset (resp + n, 'x', 200000);
  resp[n + 200000] = '\0';
  cfg.stall_timeout_s = 3;
  cfg.max_attempts = 0; /* no count: the deadline alone */
  cfg.retry_budget_ms = 1500;
  use_client (&cfg);
  SCRIPT (script);
  t0 = s3_now_ms ();
  assert_int_equal (get (&r, 0, 200000, NULL, buf), -1);
  ms = elapsed_ms (t0);
  assert_error (&r, S3BD_ENET, "GET s3://bkt/key bytes 0-199999");
  assert_error (&r, S3BD_ENET, "timed out");
  assert_int_equal (r.attempts, 1);
  assert_true (ms >= 1400 && ms < 3000);
}

/* A server that never answers, and a deadline of 2.5 s with stalls cut
 * after 1 s: attempts are retried until the deadline, which ends the
 * request on time.
 */
static void
test_hang_ends_at_deadline (void **state)
{
  static const struct step script[] = {
    { NULL, false, 0 },
    { NULL, false, 0 },
    { NULL, false, 0 },
    { NULL, false, 0 },
  };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  char buf[10];
  uint64_t t0, ms;

  (void)state;
  cfg.stall_timeout_s = 1;
  cfg.max_attempts = 0;
  cfg.retry_budget_ms = 2500;
  use_client (&cfg);
  SCRIPT (script);
  t0 = s3_now_ms ();
  assert_int_equal (get (&r, 0, 10, NULL, buf), -1);
  ms = elapsed_ms (t0);
  assert_error (&r, S3BD_ENET, "GET s3://bkt/key bytes 0-9 (after ");
  assert_true (r.attempts >= 2);
  assert_true (ms >= 2400 && ms < 3800);
}

#define SLOWDOWN_503                                                           \
  {                                                                            \
    "HTTP/1.1 503 Slow Down\r\nContent-Length: 58\r\n\r\n"                     \
    "<Error><Code>SlowDown</Code><Message>x</Message></Error>\r\n",            \
        false, 0                                                               \
  }

/* A dead endpoint (503 to everything) and a quota of 12 tokens: two
 * retries of 5, then every request fails at its first error, and says
 * why.  A success gives a token back.
 */
static void
test_quota_dead_endpoint (void **state)
{
  static const struct step script[] = {
    SLOWDOWN_503,
    SLOWDOWN_503,
    SLOWDOWN_503,
    SLOWDOWN_503,
    { GOOD_206_0_9, false, 0 },
    SLOWDOWN_503,
  };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  char buf[10];

  (void)state;
  cfg.max_attempts = 0;
  cfg.retry_quota = 12;
  use_client (&cfg);
  SCRIPT (script);
  assert_int_equal (get (&r, 0, 10, NULL, buf), -1);
  assert_int_equal (r.attempts, 3);
  assert_error (&r, S3BD_ESERVER,
                "GET s3://bkt/key bytes 0-9 (after 3 "
                "attempts in ");
  assert_error (&r, S3BD_ESERVER,
                " ms, no retry: the retry quota is spent): HTTP 503 SlowDown");
  assert_int_equal (get (&r, 0, 10, NULL, buf), -1);
  assert_int_equal (r.attempts, 1);
  assert_error (&r, S3BD_ESERVER, "(after 1 attempt in ");
  assert_error (&r, S3BD_ESERVER, "no retry: the retry quota is spent");
  /* 2 tokens left; the success makes 3, still short of a retry. */
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_int_equal (get (&r, 0, 10, NULL, buf), -1);
  assert_int_equal (r.attempts, 1);
  assert_int_equal (server_nseen (), 6);
  assert_int_equal (stats ().retries, 2);
  assert_int_equal (stats ().failures, 3);
}

static char logged[4][512];
static int nlogged;

static void
capture (enum s3bd_log_level level, const char *msg)
{
  assert_int_equal (level, S3BD_LOG_DEBUG);
  if (nlogged < 4)
    snprintf (logged[nlogged], sizeof logged[0], "%s", msg);
  nlogged++;
}

/* At verbose, a line per retry: the request, the attempt, the reason,
 * the delay.  Without verbose, none.
 */
static void
test_retry_logged (void **state)
{
  static const struct step script[] = {
    SLOWDOWN_503, { SHORT_206_0_9, true, 0 }, { GOOD_206_0_9, false, 0 },
    SLOWDOWN_503, { GOOD_206_0_9, false, 0 },
  };
  struct s3_config cfg = base_config ();
  struct s3_request r;
  char buf[10];

  (void)state;
  cfg.log = capture;
  cfg.verbose = 1;
  use_client (&cfg);
  SCRIPT (script);
  nlogged = 0;
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_int_equal (nlogged, 2);
  if (strstr (logged[0], "s3bd: GET s3://bkt/key bytes 0-9: attempt 1: HTTP "
                         "503 SlowDown: x; retry in ")
          == NULL
      || strstr (logged[1], "s3bd: GET s3://bkt/key bytes 0-9: attempt 2: "
                            "transfer closed with 5 bytes remaining")
             == NULL
      || strstr (logged[1], " ms") == NULL)
    fail_msg ("log lines: '%s', '%s'", logged[0], logged[1]);

  cfg.verbose = 0;
  use_client (&cfg);
  nlogged = 0;
  assert_int_equal (get (&r, 0, 10, NULL, buf), 0);
  assert_int_equal (r.attempts, 2);
  assert_int_equal (nlogged, 0);
}

/* ---- The asynchronous engine ---- */

struct waiter
{
  atomic_int done;
  int progress_calls, last_n;
};

static void
on_done (struct s3_request *r, void *arg)
{
  struct waiter *w = arg;

  (void)r;
  atomic_fetch_add (&w->done, 1);
}

static void
on_progress (struct s3_request *r, int n, void *arg)
{
  struct waiter *w = r->arg;

  (void)arg;
  w->progress_calls++;
  w->last_n = n;
}

static struct s3_engine *
engine (void)
{
  struct s3_engine *e;
  struct s3bd_error err = { 0 };

  if (s3_engine_new (client, 4, &e, &err) == -1)
    fail_msg ("s3_engine_new: %s", err.msg);
  return e;
}

static void
async_get (struct s3_request *r, struct waiter *w, uint64_t off, void *buf)
{
  s3_request_get_range (r, "bkt", "key", off, 10, NULL, buf);
  r->done = on_done;
  r->arg = w;
}

static void
test_iov_progress (void **state)
{
  static const struct step script[] = { { GOOD_206_10_19, false, 0 } };
  char b0[4], b1[4], b2[2];
  struct iovec iov[3] = { { b0, 4 }, { b1, 4 }, { b2, 2 } };
  struct s3_engine *e = engine ();
  struct waiter w = { 0 };
  struct s3_request r;

  (void)state;
  SCRIPT (script);
  async_get (&r, &w, 10, NULL);
  r.buf_len = 0;
  r.iov = iov;
  r.iovcnt = 3;
  r.progress = on_progress;
  s3_engine_submit (e, &r);
  assert_int_equal (s3_engine_run (e, 5000), 0);
  assert_int_equal (atomic_load (&w.done), 1);
  assert_int_equal (r.rc, 0);
  assert_true (w.progress_calls >= 1);
  assert_int_equal (w.last_n, 3);
  assert_memory_equal (b0, "ABCD", 4);
  assert_memory_equal (b1, "EFGH", 4);
  assert_memory_equal (b2, "IJ", 2);
  s3_engine_free (e);
}

/* curl_multi_perform fails with a transfer in flight: it ends at once
 * with the call named, is not retried, and the engine takes new work.
 */
static void
test_multi_perform_fails (void **state)
{
  static const struct step script[] = {
    { NULL, false, 0 }, /* the server never answers */
    { GOOD_206_0_9, false, 0 },
  };
  struct s3_engine *e = engine ();
  struct waiter w = { 0 };
  struct s3_request r;
  struct s3_stats s;
  char buf[10];
  uint64_t t0;

  (void)state;
  SCRIPT (script);
  async_get (&r, &w, 0, buf);
  s3_engine_submit (e, &r);
  /* Until the server has the request: then it is surely in flight. */
  t0 = s3_now_ms ();
  while (server_nseen () < 1 && elapsed_ms (t0) < 5000)
    s3_engine_run (e, 50);
  assert_int_equal (server_nseen (), 1);
  assert_int_equal (atomic_load (&w.done), 0);

  atomic_store (&fail_perform, true);
  t0 = s3_now_ms ();
  assert_int_equal (s3_engine_run (e, 5000), 0);
  assert_true (elapsed_ms (t0) < 1000);
  atomic_store (&fail_perform, false);
  assert_int_equal (atomic_load (&w.done), 1);
  assert_error (&r, S3BD_EIO,
                "GET s3://bkt/key bytes 0-9: transfer abandoned: "
                "curl_multi_perform failed: ");
  assert_non_null (
      strstr (r.err.msg, curl_multi_strerror (CURLM_INTERNAL_ERROR)));
  assert_int_equal (r.attempts, 1);

  /* The multi handle is empty and works again. */
  async_get (&r, &w, 0, buf);
  s3_engine_submit (e, &r);
  assert_int_equal (s3_engine_run (e, 5000), 0);
  assert_int_equal (r.rc, 0);
  assert_memory_equal (buf, "0123456789", 10);
  s3_engine_stats (e, &s);
  assert_int_equal (s.requests, 2);
  assert_int_equal (s.retries, 0);
  assert_int_equal (s.failures, 1);
  s3_engine_free (e);
}

/* curl_multi_poll fails: the transfer in flight ends with the call
 * named, and an engine whose poll keeps failing sleeps instead of
 * spinning.
 */
static void
test_multi_poll_fails (void **state)
{
  static const struct step script[] = { { NULL, false, 0 } };
  struct s3_engine *e = engine ();
  struct waiter w = { 0 };
  struct s3_request r;
  char buf[10];
  uint64_t t0;

  (void)state;
  SCRIPT (script);
  async_get (&r, &w, 0, buf);
  s3_engine_submit (e, &r);
  t0 = s3_now_ms ();
  while (server_nseen () < 1 && elapsed_ms (t0) < 5000)
    s3_engine_run (e, 50);
  assert_int_equal (atomic_load (&w.done), 0);

  atomic_store (&fail_poll, true);
  assert_int_equal (s3_engine_run (e, 5000), 0);
  assert_int_equal (atomic_load (&w.done), 1);
  assert_error (&r, S3BD_EIO,
                "GET s3://bkt/key bytes 0-9: transfer abandoned: "
                "curl_multi_poll failed: ");

  /* Idle with a broken poll: it waits out its timeout, with a handful
   * of calls, not thousands.
   */
  atomic_store (&poll_calls, 0);
  t0 = s3_now_ms ();
  assert_int_equal (s3_engine_run (e, 300), 0);
  assert_true (elapsed_ms (t0) >= 250);
  assert_true (atomic_load (&poll_calls) <= 3);
  s3_engine_free (e);
}

static void *
wake_later (void *arg)
{
  struct timespec ts = { 0, 100 * 1000 * 1000 };

  nanosleep (&ts, NULL);
  s3_engine_wakeup (arg);
  return NULL;
}

/* s3_engine_wakeup makes an idle s3_engine_run return (s3.h). */
static void
test_wakeup_returns_idle_run (void **state)
{
  struct s3_engine *e = engine ();
  pthread_t t;
  uint64_t t0;

  (void)state;
  assert_int_equal (pthread_create (&t, NULL, wake_later, e), 0);
  t0 = s3_now_ms ();
  assert_int_equal (s3_engine_run (e, 10000), 0);
  assert_true (elapsed_ms (t0) < 5000);
  pthread_join (t, NULL);
  s3_engine_free (e);
}

struct runner
{
  struct s3_engine *e;
  atomic_bool stop;
};

static void *
run_engine (void *arg)
{
  struct runner *ru = arg;

  while (!atomic_load (&ru->stop))
    s3_engine_run (ru->e, 3000);
  return NULL;
}

static bool
wait_done (struct waiter *w, int n, uint64_t ms)
{
  uint64_t t0 = s3_now_ms ();
  struct timespec ts = { 0, 2 * 1000 * 1000 };

  while (atomic_load (&w->done) < n && elapsed_ms (t0) < ms)
    nanosleep (&ts, NULL);
  return atomic_load (&w->done) >= n;
}

/* curl_multi_wakeup fails: nothing submitted is lost, and once the
 * engine knows, a submission waits a short nap, not a whole poll.
 */
static void
test_wakeup_fails (void **state)
{
  static const struct step script[] = {
    { GOOD_206_0_9, false, 0 },
    { GOOD_206_0_9, false, 0 },
  };
  struct runner ru = { .e = engine () };
  struct waiter w = { 0 };
  struct s3_request r1, r2;
  char buf[10];
  pthread_t t;
  uint64_t t0;

  (void)state;
  SCRIPT (script);
  atomic_store (&fail_wakeup, true);
  assert_int_equal (pthread_create (&t, NULL, run_engine, &ru), 0);
  async_get (&r1, &w, 0, buf);
  s3_engine_submit (ru.e, &r1);
  assert_true (wait_done (&w, 1, 10000));
  assert_int_equal (r1.rc, 0);

  async_get (&r2, &w, 0, buf);
  t0 = s3_now_ms ();
  s3_engine_submit (ru.e, &r2);
  assert_true (wait_done (&w, 2, 10000));
  assert_int_equal (r2.rc, 0);
  /* Without the fallback: up to the 3 s poll of the idle runner. */
  assert_true (elapsed_ms (t0) < 1500);

  atomic_store (&fail_wakeup, false);
  atomic_store (&ru.stop, true);
  s3_engine_wakeup (ru.e);
  pthread_join (t, NULL);
  s3_engine_free (ru.e);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_good_206, setup, teardown),
    cmocka_unit_test_setup_teardown (test_keepalive_reuse, setup, teardown),
    cmocka_unit_test_setup_teardown (test_200_for_range, setup, teardown),
    cmocka_unit_test_setup_teardown (test_200_for_range_every_time, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_bad_content_range, setup, teardown),
    cmocka_unit_test_setup_teardown (test_bad_content_range_every_time, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_stall_is_retried, setup, teardown),
    cmocka_unit_test_setup_teardown (test_stall_mid_body_is_retried, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_trickle_ends_at_deadline, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_hang_ends_at_deadline, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_quota_dead_endpoint, setup, teardown),
    cmocka_unit_test_setup_teardown (test_retry_logged, setup, teardown),
    cmocka_unit_test_setup_teardown (test_short_body_then_close, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_short_body_every_time, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_if_match_412, setup, teardown),
    cmocka_unit_test_setup_teardown (test_503_then_206, setup, teardown),
    cmocka_unit_test_setup_teardown (test_iov_progress, setup, teardown),
    cmocka_unit_test_setup_teardown (test_multi_perform_fails, setup, teardown),
    cmocka_unit_test_setup_teardown (test_multi_poll_fails, setup, teardown),
    cmocka_unit_test_setup_teardown (test_wakeup_returns_idle_run, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_wakeup_fails, setup, teardown),
  };

  real_perform
      = (CURLMcode (*) (CURLM *, int *))dlsym (RTLD_NEXT, "curl_multi_perform");
  real_poll = (CURLMcode (*) (CURLM *, struct curl_waitfd[], unsigned, int,
                              int *))dlsym (RTLD_NEXT, "curl_multi_poll");
  real_wakeup = (CURLMcode (*) (CURLM *))dlsym (RTLD_NEXT, "curl_multi_wakeup");
  if (!real_perform || !real_poll || !real_wakeup)
    {
      fprintf (stderr, "cannot find libcurl's multi functions: %s\n",
               dlerror ());
      return 77;
    }
  return cmocka_run_group_tests (tests, NULL, NULL);
}
