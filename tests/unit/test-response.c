/* Unit tests of lib/s3/response.c: what makes a response's bytes fit to
 * hand out.  The body and header callbacks and the judge are fed
 * responses directly (status, headers, body pieces, curl's result), no
 * server and no curl transfer: a 206 for exactly the range, a 200 for a
 * ranged GET, missing, garbage and shifted Content-Range and wrong
 * totals, short and long bodies (each retried, none written anywhere),
 * If-Match and 412, errors that are retried (and as what class) and
 * errors that are not, and when iov buffers are reported final.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/s3.h"
#include "../../lib/s3/engineint.h"

static struct s3_client *client;

static int
setup (void **state)
{
  struct s3_config cfg = { 0 };
  struct s3bd_error err = { 0 };

  (void)state;
  /* Never contacted: nothing here makes a connection. */
  cfg.endpoint = "http://127.0.0.1:9";
  cfg.region = "us-east-1";
  cfg.addressing = S3_ADDR_PATH;
  cfg.creds.access_key = "AKIDTEST";
  cfg.creds.secret_key = "secret";
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
  return 0;
}

/* One attempt of a request, as the engine would start it. */
struct t
{
  struct s3_request r;
  struct attempt a;
  int progress_calls;
  int progress_n[8];
};

static void
on_progress (struct s3_request *r, int n, void *arg)
{
  struct t *t = arg;

  (void)r;
  if (t->progress_calls < 8)
    t->progress_n[t->progress_calls] = n;
  t->progress_calls++;
}

static void
t_range (struct t *t, uint64_t off, uint64_t len, const char *etag, void *buf)
{
  memset (t, 0, sizeof *t);
  s3_request_get_range (&t->r, "bkt", "key", off, len, etag, buf);
  t->r.arg = t;
  t->a.r = &t->r;
}

static void
t_iov (struct t *t, uint64_t off, const struct iovec *iov, int iovcnt)
{
  uint64_t len = 0;

  for (int i = 0; i < iovcnt; i++)
    len += iov[i].iov_len;
  t_range (t, off, len, NULL, NULL);
  t->r.buf_len = 0;
  t->r.iov = iov;
  t->r.iovcnt = iovcnt;
  t->r.progress = on_progress;
}

/* What the engine's attempt_reset clears before another attempt. */
static void
t_next_attempt (struct t *t)
{
  struct attempt *a = &t->a;

  strbuf_free (&a->errbody);
  strbuf_free (&a->growbody);
  a->written = 0;
  a->iov_i = 0;
  a->iov_off = 0;
  a->overflow = false;
  a->stalled = false;
  a->refused = false;
  a->body_ok = 0;
  a->range_hdr = 0;
  a->range_first = a->range_last = a->range_total = 0;
  a->range_raw[0] = '\0';
}

static void
t_free (struct t *t)
{
  strbuf_free (&t->a.errbody);
  strbuf_free (&t->a.growbody);
  s3_request_release (&t->r);
}

static void
hdr (struct t *t, const char *line)
{
  char buf[512];
  size_t n = strlen (line);

  assert_true (n < sizeof buf);
  memcpy (buf, line, n);
  assert_int_equal (s3_response_header_cb (buf, 1, n, &t->a), n);
}

/* Feeds a body piece; returns what the callback returned. */
static size_t
body (struct t *t, const char *data, long status, curl_off_t cl)
{
  return s3_response_body (&t->a, data, strlen (data), status, cl);
}

static enum verdict
decide (struct t *t, CURLcode cc, long status, curl_off_t cl)
{
  return s3_response_decide (client, &t->a, cc, status, cl);
}

static void
assert_error (struct t *t, enum s3bd_errcode code, const char *part)
{
  if (t->r.err.code != code || strstr (t->r.err.msg, part) == NULL)
    fail_msg ("expected %s with \"%s\", got %s: %s", s3bd_errname (code), part,
              s3bd_errname (t->r.err.code), t->r.err.msg);
}

static void
test_206_exact_range (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "ETag: \"abc\"\r\n");
  hdr (&t, "Last-Modified: Tue, 01 Apr 2025 10:00:00 GMT\r\n");
  hdr (&t, "content-range:   bytes 10-19/100  \r\n");
  assert_int_equal (body (&t, "abcd", 206, 10), 4);
  assert_int_equal (body (&t, "efghij", 206, 10), 6);
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), DONE_OK);
  assert_memory_equal (buf, "abcdefghij", 10);
  assert_int_equal (t.r.status, 206);
  assert_int_equal (t.r.content_length, 10);
  assert_int_equal (t.r.object_size, 100);
  assert_string_equal (t.r.etag, "\"abc\"");
  assert_string_equal (t.r.last_modified, "Tue, 01 Apr 2025 10:00:00 GMT");
  assert_int_equal (t.r.err.code, S3BD_OK);
  t_free (&t);
}

static void
test_206_wrong_range (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  memset (buf, 'Z', sizeof buf);
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/100\r\n");
  /* Refused at its first byte: the transfer stops, nothing is written. */
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_true (t.a.refused);
  assert_memory_equal (buf, "ZZZZZZZZZZ", 10);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
  assert_int_equal (t.a.why, RETRY_TRANSIENT);
  assert_error (&t, S3BD_EPROTO,
                "wrong Content-Range in the response: asked for bytes 10-19, "
                "got bytes 0-9/100");
  t_free (&t);
}
static void
test_206_missing_or_garbage_range (void **state)
{
  static const struct
  {
    const char *line, *msg;
  } bad[] = {
    { NULL, "wrong Content-Range in the response: asked for bytes 10-19, got "
            "none" },
    { "Content-Range: bytes */100\r\n",
      "garbage Content-Range in the response: asked for bytes 10-19, got "
      "'bytes */100'" },
    { "Content-Range: garbage\r\n", "got 'garbage'" },
    { "Content-Range: bytes 10-19\r\n", "got 'bytes 10-19'" },
    { "Content-Range: bytes 10-19/*\r\n", "got 'bytes 10-19/*'" },
    { "Content-Range: items 10-19/100\r\n", "got 'items 10-19/100'" },
    { "Content-Range: bytes 19-10/100\r\n", "got 'bytes 19-10/100'" },
    { "Content-Range: bytes +10-19/100\r\n", "got 'bytes +10-19/100'" },
    { "Content-Range: bytes 10-19/100x\r\n", "got 'bytes 10-19/100x'" },
    { "Content-Range: bytes 10 -19/100\r\n", "got 'bytes 10 -19/100'" },
    { "Content-Range: bytes 18446744073709551626-19/100\r\n",
      "got 'bytes 18446744073709551626-19/100'" },
    { "Content-Range: bytes '10-19/1\x01x\x7f\r\n", "got 'bytes ?10-19/1?x?'" },
    { "Content-Range:\r\n", "got ''" },
  };
  char buf[10];

  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      struct t t;

      memset (buf, 'Z', sizeof buf);
      t_range (&t, 10, 10, NULL, buf);
      hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
      if (bad[i].line)
        hdr (&t, bad[i].line);
      assert_int_equal (body (&t, "0123456789", 206, 10), 0);
      assert_memory_equal (buf, "ZZZZZZZZZZ", 10);
      assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
      assert_error (&t, S3BD_EPROTO, bad[i].msg);
      t_free (&t);
    }
}

/* The total must lie past the range, and be the object's size when the
 * request knows it (fetch-s3.c gives the index's).
 */
static void
test_206_wrong_total (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 10-19/19\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "wrong Content-Range total in the response: bytes 10-19/19 "
                "ends past the object");
  t_free (&t);

  t_range (&t, 10, 10, NULL, buf);
  t.r.expect_size = 100;
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 10-19/101\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "wrong Content-Range total in the response: bytes "
                "10-19/101, the object has 100 bytes");
  t_free (&t);

  /* The right total. */
  t_range (&t, 10, 10, NULL, buf);
  t.r.expect_size = 100;
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: Bytes 10-19/100\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 10);
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), DONE_OK);
  assert_memory_equal (buf, "0123456789", 10);
  t_free (&t);

  /* A Content-Length that is not the range's. */
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 10-19/100\r\n");
  assert_int_equal (body (&t, "01234", 206, 5), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 5), RETRY);
  assert_error (&t, S3BD_EPROTO, "Content-Length 5 for bytes 10-19");
  t_free (&t);

  /* A range running past the object's end, answered with what there is
   * (S3 does that): no retry will change it.
   */
  t_range (&t, 90, 20, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 90-99/100\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), DONE_ERROR);
  assert_error (&t, S3BD_ERANGE,
                "range runs past the object's end: asked for bytes 90-109, "
                "got Content-Range bytes 90-99/100");
  t_free (&t);
  t_range (&t, 90, 20, NULL, buf);
  t.r.expect_size = 100;
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 90-99/100\r\n");
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), DONE_ERROR);
  assert_error (&t, S3BD_ERANGE, "runs past the object's end");
  t_free (&t);
  /* Unless the object is known to be longer: then the total is wrong. */
  t_range (&t, 90, 20, NULL, buf);
  t.r.expect_size = 200;
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 90-99/100\r\n");
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), RETRY);
  assert_error (&t, S3BD_EPROTO, "got bytes 90-99/100");
  t_free (&t);

  /* A body that never started is judged at the end all the same. */
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 10-19/15\r\n");
  assert_int_equal (decide (&t, CURLE_OK, 206, 0), RETRY);
  assert_error (&t, S3BD_EPROTO, "ends past the object");
  t_free (&t);
}
static void
test_200_for_range (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  /* The whole object is the range. */
  t_range (&t, 0, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, 10), 10);
  assert_int_equal (decide (&t, CURLE_OK, 200, 10), DONE_OK);
  assert_memory_equal (buf, "0123456789", 10);
  assert_int_equal (t.r.object_size, 10);
  t_free (&t);

  /* So it is with the object's size known, and with no length. */
  t_range (&t, 0, 10, NULL, buf);
  t.r.expect_size = 10;
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, -1), 10);
  assert_int_equal (decide (&t, CURLE_OK, 200, -1), DONE_OK);
  t_free (&t);

  /* The object at the right length but the range not at 0: refused
   * before a byte is written, and retried.
   */
  memset (buf, 'Z', sizeof buf);
  t_range (&t, 10, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, 10), 0);
  assert_memory_equal (buf, "ZZZZZZZZZZ", 10);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 200, 10), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "server ignored the range (HTTP 200, 10 bytes)");
  t_free (&t);

  /* At 0, the right length, but the object is longer: the first bytes
   * of the object perhaps, but not a whole object's answer.
   */
  t_range (&t, 0, 10, NULL, buf);
  t.r.expect_size = 30;
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 200, 10), RETRY);
  assert_error (&t, S3BD_EPROTO, "server ignored the range (HTTP 200");
  t_free (&t);

  /* A longer object, its length given: refused at once. */
  t_range (&t, 0, 4, NULL, buf);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 200, 10), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "server ignored the range (HTTP 200, 10 bytes)");
  t_free (&t);

  /* A longer object of unknown length: the body stops at the end of the
   * buffer.
   */
  t_range (&t, 0, 4, NULL, buf);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, -1), 0);
  assert_true (t.a.overflow);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 200, -1), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "response body longer than the 4 bytes asked for");
  t_free (&t);

  /* Another 2xx is never the range. */
  t_range (&t, 0, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 203 Non-Authoritative Information\r\n");
  assert_int_equal (body (&t, "0123456789", 203, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 203, 10), RETRY);
  assert_error (&t, S3BD_EPROTO, "server ignored the range (HTTP 203)");
  t_free (&t);
}
static void
test_short_body (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  /* curl saw the whole response (no Content-Length, say) but it is short. */
  t_range (&t, 0, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/10\r\n");
  assert_int_equal (body (&t, "01234", 206, -1), 5);
  assert_int_equal (decide (&t, CURLE_OK, 206, -1), RETRY);
  assert_int_equal (t.a.why, RETRY_TRANSIENT);
  assert_error (&t, S3BD_EPROTO, "short body: 5 of 10 bytes");
  t_free (&t);

  /* The connection closed early: curl's PARTIAL_FILE, worth a retry. */
  t_range (&t, 0, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/10\r\n");
  assert_int_equal (body (&t, "01234", 206, 10), 5);
  snprintf (t.a.curl_err, sizeof t.a.curl_err,
            "transfer closed with 5 bytes remaining to read");
  assert_int_equal (decide (&t, CURLE_PARTIAL_FILE, 206, 10), RETRY);
  assert_error (&t, S3BD_ENET, "transfer closed with 5 bytes remaining");
  t_free (&t);

  /* A body of the wrong length for an unranged GET into a buffer. */
  t_range (&t, 0, 5, NULL, buf);
  t.r.ranged = false;
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "012", 200, 3), 3);
  assert_int_equal (decide (&t, CURLE_OK, 200, 3), RETRY);
  assert_error (&t, S3BD_EPROTO, "body of 3 bytes, expected 5");
  t_free (&t);
}

static void
test_if_match_412 (void **state)
{
  static const char xml[]
      = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
        "PreconditionFailed</Code><Message>At least one of the pre-conditions "
        "you specified did not hold</Message></Error>";
  struct t t;
  char buf[10];

  (void)state;
  memset (buf, 'Z', sizeof buf);
  t_range (&t, 0, 10, "\"etag-1\"", buf);
  hdr (&t, "HTTP/1.1 412 Precondition Failed\r\n");
  assert_int_equal (body (&t, xml, 412, (curl_off_t)strlen (xml)),
                    strlen (xml));
  assert_int_equal (decide (&t, CURLE_OK, 412, (curl_off_t)strlen (xml)),
                    DONE_ERROR);
  assert_error (&t, S3BD_ECHANGED,
                "object changed since it was indexed: its ETag is no longer "
                "\"etag-1\" (HTTP 412)");
  assert_int_equal (t.r.err.http_status, 412);
  assert_string_equal (t.r.err.s3_code, "PreconditionFailed");
  /* An error document never lands in the caller's buffer. */
  for (size_t i = 0; i < sizeof buf; i++)
    assert_int_equal (buf[i], 'Z');
  t_free (&t);
}

struct http_case
{
  enum s3_method method;
  int status;
  const char *code; /* S3 error code in the body, or NULL: no body */
  enum verdict verdict;
  enum s3bd_errcode errcode;
  const char *msg;
  enum retry_class why; /* on RETRY */
};

static void
test_http_errors (void **state)
{
  static const struct http_case cases[] = {
    { S3_GET, 503, "SlowDown", RETRY, S3BD_ESERVER, "HTTP 503 SlowDown: why",
      RETRY_THROTTLING },
    { S3_GET, 503, NULL, RETRY, S3BD_ESERVER, "HTTP 503", RETRY_TRANSIENT },
    { S3_GET, 429, NULL, RETRY, S3BD_ESERVER, "HTTP 429", RETRY_THROTTLING },
    { S3_GET, 500, "InternalError", RETRY, S3BD_ESERVER, "HTTP 500",
      RETRY_TRANSIENT },
    { S3_GET, 400, "RequestTimeout", RETRY, S3BD_ESERVER, "RequestTimeout",
      RETRY_TRANSIENT },
    { S3_GET, 404, "NoSuchKey", DONE_ERROR, S3BD_ENOKEY, "no such key",
      RETRY_NEVER },
    { S3_GET, 404, "NoSuchBucket", DONE_ERROR, S3BD_ENOBUCKET, "no such bucket",
      RETRY_NEVER },
    { S3_HEAD, 404, NULL, DONE_ERROR, S3BD_ENOKEY, "(or no such bucket)",
      RETRY_NEVER },
    { S3_GET, 403, "SignatureDoesNotMatch", DONE_ERROR, S3BD_EAUTH,
      "rejected the credentials from explicit", RETRY_NEVER },
    { S3_GET, 403, "AccessDenied", DONE_ERROR, S3BD_EDENIED,
      "access denied (AccessDenied: why) with credentials from explicit",
      RETRY_NEVER },
    { S3_GET, 416, "InvalidRange", DONE_ERROR, S3BD_ERANGE,
      "range not satisfiable (HTTP 416)", RETRY_NEVER },
    { S3_GET, 400, "AuthorizationHeaderMalformed", DONE_ERROR, S3BD_EINVAL,
      "wrong region or endpoint (HTTP 400 AuthorizationHeaderMalformed)",
      RETRY_NEVER },
    { S3_GET, 301, NULL, DONE_ERROR, S3BD_EINVAL, "in region us-east-1",
      RETRY_NEVER },
    { S3_GET, 400, "InvalidArgument", DONE_ERROR, S3BD_EHTTP,
      "HTTP 400 InvalidArgument: why", RETRY_NEVER },
  };
  char buf[4];

  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
      const struct http_case *k = &cases[i];
      struct t t;
      char line[64], xml[256];

      t_range (&t, 0, 4, NULL, buf);
      t.r.method = k->method;
      snprintf (line, sizeof line, "HTTP/1.1 %d Whatever\r\n", k->status);
      hdr (&t, line);
      if (k->code)
        {
          snprintf (xml, sizeof xml,
                    "<Error><Code>%s</Code><Message>why</Message></Error>",
                    k->code);
          body (&t, xml, k->status, (curl_off_t)strlen (xml));
        }
      if (decide (&t, CURLE_OK, k->status, -1) != k->verdict)
        fail_msg ("HTTP %d %s: wrong verdict", k->status,
                  k->code ? k->code : "");
      assert_error (&t, k->errcode, k->msg);
      assert_int_equal (t.r.err.http_status, k->status);
      if (k->verdict == RETRY)
        assert_int_equal (t.a.why, k->why);
      t_free (&t);
    }
}

static void
test_error_body_is_cut (void **state)
{
  struct t t;
  char buf[4], *big = malloc (100 * 1024 + 1);

  (void)state;
  assert_non_null (big);
  memset (big, 'x', 100 * 1024);
  big[100 * 1024] = '\0';
  t_range (&t, 0, 4, NULL, buf);
  hdr (&t, "HTTP/1.1 500 Internal Server Error\r\n");
  /* Accepted (the transfer goes on) but not all kept. */
  for (int i = 0; i < 3; i++)
    assert_int_equal (body (&t, big, 500, -1), 100 * 1024);
  assert_true (t.a.errbody.len <= 64 * 1024);
  assert_int_equal (decide (&t, CURLE_OK, 500, -1), RETRY);
  free (big);
  t_free (&t);
}

static void
test_curl_errors (void **state)
{
  struct t t;
  char buf[4];

  (void)state;
  t_range (&t, 0, 4, NULL, buf);
  snprintf (t.a.curl_err, sizeof t.a.curl_err, "Failed to connect");
  assert_int_equal (decide (&t, CURLE_COULDNT_CONNECT, 0, -1), RETRY);
  assert_error (&t, S3BD_ENET, "Failed to connect");
  assert_int_equal (t.r.err.http_status, 0);
  assert_int_equal (t.a.why, RETRY_TRANSIENT);
  t_free (&t);

  /* A stall the engine's clock ended (xferinfo_cb): curl says only that
   * a callback aborted, the attempt says why.
   */
  t_range (&t, 0, 4, NULL, buf);
  t.a.stalled = true;
  assert_int_equal (decide (&t, CURLE_ABORTED_BY_CALLBACK, 206, 4), RETRY);
  assert_error (&t, S3BD_ENET, "stalled: no data for 5 s");
  assert_int_equal (t.a.why, RETRY_TIMEOUT);
  t_free (&t);

  /* A timeout (the deadline, a stall) costs the quota more. */
  t_range (&t, 0, 4, NULL, buf);
  snprintf (t.a.curl_err, sizeof t.a.curl_err, "Operation too slow");
  assert_int_equal (decide (&t, CURLE_OPERATION_TIMEDOUT, 0, -1), RETRY);
  assert_error (&t, S3BD_ENET, "Operation too slow");
  assert_int_equal (t.a.why, RETRY_TIMEOUT);
  t_free (&t);

  /* No error buffer: curl's own words. */
  t_range (&t, 0, 4, NULL, buf);
  assert_int_equal (decide (&t, CURLE_PEER_FAILED_VERIFICATION, 0, -1),
                    DONE_ERROR);
  assert_error (&t, S3BD_EINVAL,
                curl_easy_strerror (CURLE_PEER_FAILED_VERIFICATION));
  t_free (&t);

  t_range (&t, 0, 4, NULL, buf);
  assert_int_equal (decide (&t, CURLE_OUT_OF_MEMORY, 0, -1), DONE_ERROR);
  assert_error (&t, S3BD_ENOMEM, "out of memory");
  t_free (&t);
}

/* A second status line (after 100 Continue, or a redirect) starts a new
 * response: what the first said is forgotten.
 */
static void
test_new_response_forgets_headers (void **state)
{
  struct t t;
  char buf[10];

  (void)state;
  t_range (&t, 0, 10, NULL, buf);
  hdr (&t, "HTTP/1.1 100 Continue\r\n");
  hdr (&t, "ETag: \"old\"\r\n");
  hdr (&t, "Content-Range: bytes 0-9/10\r\n");
  hdr (&t, "\r\n");
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  assert_string_equal (t.r.etag, "");
  assert_int_equal (t.a.range_hdr, 0);
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
  assert_error (&t, S3BD_EPROTO, "got none");
  t_free (&t);
}

static void
test_unranged_growing_body (void **state)
{
  struct t t;

  (void)state;
  memset (&t, 0, sizeof t);
  t.r.method = S3_GET;
  t.r.bucket = "bkt";
  t.a.r = &t.r;
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  body (&t, "<List>", 200, -1);
  body (&t, "</List>", 200, -1);
  assert_int_equal (decide (&t, CURLE_OK, 200, -1), DONE_OK);
  assert_int_equal (t.r.body_len, 13);
  assert_string_equal (t.r.body, "<List></List>");
  assert_int_equal (t.r.content_length, 13);
  t_free (&t);

  /* An empty body still gets a buffer, so that callers may parse it. */
  memset (&t, 0, sizeof t);
  t.r.method = S3_GET;
  t.a.r = &t.r;
  assert_int_equal (decide (&t, CURLE_OK, 200, 0), DONE_OK);
  assert_non_null (t.r.body);
  assert_int_equal (t.r.body_len, 0);
  t_free (&t);
}

/* iov: buffers are reported final one by one, as they fill, for a 206 of
 * exactly the range; each report covers more buffers than the last.
 */
static void
test_iov_progress (void **state)
{
  char b0[4], b1[4], b2[2];
  struct iovec iov[3] = { { b0, 4 }, { b1, 4 }, { b2, 2 } };
  struct t t;

  (void)state;
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 20-29/30\r\n");
  body (&t, "abc", 206, 10);
  assert_int_equal (t.progress_calls, 0);
  body (&t, "def", 206, 10); /* fills b0 */
  assert_int_equal (t.progress_calls, 1);
  assert_int_equal (t.progress_n[0], 1);
  body (&t, "gh", 206, 10); /* fills b1 exactly */
  assert_int_equal (t.progress_calls, 2);
  assert_int_equal (t.progress_n[1], 2);
  body (&t, "ij", 206, 10);
  assert_int_equal (t.progress_calls, 3);
  assert_int_equal (t.progress_n[2], 3);
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), DONE_OK);
  assert_memory_equal (b0, "abcd", 4);
  assert_memory_equal (b1, "efgh", 4);
  assert_memory_equal (b2, "ij", 2);
  t_free (&t);

  /* All at once: one report of all three. */
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 20-29/30\r\n");
  body (&t, "0123456789", 206, 10);
  assert_int_equal (t.progress_calls, 1);
  assert_int_equal (t.progress_n[0], 3);
  t_free (&t);

  /* A 200 that is exactly the range (at offset 0) is reported too. */
  t_iov (&t, 0, iov, 3);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  body (&t, "0123456789", 200, 10);
  assert_int_equal (t.progress_calls, 1);
  assert_int_equal (decide (&t, CURLE_OK, 200, 10), DONE_OK);
  t_free (&t);
}

/* Bytes that are not the range asked for are never reported final. */
static void
test_iov_no_progress_unless_range (void **state)
{
  char b0[4], b1[4], b2[2];
  struct iovec iov[3] = { { b0, 4 }, { b1, 4 }, { b2, 2 } };
  struct t t;

  (void)state;
  /* 206 for another range. */
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/30\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (t.progress_calls, 0);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, 10), RETRY);
  t_free (&t);

  /* 206 without Content-Range. */
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  body (&t, "0123456789", 206, 10);
  assert_int_equal (t.progress_calls, 0);
  t_free (&t);

  /* 200 (the whole object) for a range not at 0. */
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  body (&t, "0123456789", 200, 10);
  assert_int_equal (t.progress_calls, 0);
  t_free (&t);

  /* 200 at 0, but a longer object (Content-Length says so). */
  t_iov (&t, 0, iov, 3);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, 30), 0);
  assert_int_equal (t.progress_calls, 0);
  t_free (&t);

  /* 206 with the right range and the wrong total. */
  t_iov (&t, 20, iov, 3);
  t.r.expect_size = 30;
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 20-29/31\r\n");
  assert_int_equal (body (&t, "0123456789", 206, 10), 0);
  assert_int_equal (t.progress_calls, 0);
  t_free (&t);

  /* 200 at 0 with no Content-Length: the length is unknown until the
   * end, so the bytes are written but not reported.
   */
  t_iov (&t, 0, iov, 3);
  hdr (&t, "HTTP/1.1 200 OK\r\n");
  assert_int_equal (body (&t, "0123456789", 200, -1), 10);
  assert_int_equal (t.progress_calls, 0);
  assert_int_equal (decide (&t, CURLE_OK, 200, -1), DONE_OK);
  t_free (&t);

  /* An error: the document goes aside, the buffers are not touched. */
  memset (b0, 'Z', 4);
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 503 Slow Down\r\n");
  body (&t, "<Error><Code>SlowDown</Code></Error>", 503, -1);
  assert_int_equal (t.progress_calls, 0);
  assert_memory_equal (b0, "ZZZZ", 4);
  assert_int_equal (decide (&t, CURLE_OK, 503, -1), RETRY);
  t_free (&t);

  /* More than the buffers hold. */
  t_iov (&t, 20, iov, 3);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 20-29/30\r\n");
  assert_int_equal (body (&t, "0123456789X", 206, -1), 0);
  assert_true (t.a.overflow);
  assert_int_equal (decide (&t, CURLE_WRITE_ERROR, 206, -1), RETRY);
  assert_error (&t, S3BD_EPROTO,
                "response body longer than the 10 bytes asked for");
  t_free (&t);
}

/* After an attempt reported buffers final and broke off, the retry
 * receives those bytes again and drops them: a reader may be copying
 * them.  Only later buffers are written, and reported.
 */
static void
test_iov_retry_never_rewrites_final (void **state)
{
  char b0[4], b1[4], b2[2];
  struct iovec iov[3] = { { b0, 4 }, { b1, 4 }, { b2, 2 } };
  struct t t;

  (void)state;
  t_iov (&t, 0, iov, 3);
  t.r.if_match = "\"e\"";
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/10\r\n");
  body (&t, "abcdef", 206, 10);
  assert_int_equal (t.progress_calls, 1);
  assert_int_equal (t.a.final, 1);
  assert_int_equal (t.a.final_bytes, 4);
  assert_int_equal (decide (&t, CURLE_PARTIAL_FILE, 206, 10), RETRY);

  /* A reader now owns b0; mark it to see any write. */
  memset (b0, 'R', 4);
  t_next_attempt (&t);
  hdr (&t, "HTTP/1.1 206 Partial Content\r\n");
  hdr (&t, "Content-Range: bytes 0-9/10\r\n");
  body (&t, "AB", 206, 10);
  body (&t, "CDEFGHIJ", 206, 10);
  assert_memory_equal (b0, "RRRR", 4);
  assert_memory_equal (b1, "EFGH", 4);
  assert_memory_equal (b2, "IJ", 2);
  assert_int_equal (t.progress_calls, 2);
  assert_int_equal (t.progress_n[1], 3);
  assert_int_equal (decide (&t, CURLE_OK, 206, 10), DONE_OK);
  t_free (&t);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_206_exact_range),
    cmocka_unit_test (test_206_wrong_range),
    cmocka_unit_test (test_206_missing_or_garbage_range),
    cmocka_unit_test (test_206_wrong_total),
    cmocka_unit_test (test_200_for_range),
    cmocka_unit_test (test_short_body),
    cmocka_unit_test (test_if_match_412),
    cmocka_unit_test (test_http_errors),
    cmocka_unit_test (test_error_body_is_cut),
    cmocka_unit_test (test_curl_errors),
    cmocka_unit_test (test_new_response_forgets_headers),
    cmocka_unit_test (test_unranged_growing_body),
    cmocka_unit_test (test_iov_progress),
    cmocka_unit_test (test_iov_no_progress_unless_range),
    cmocka_unit_test (test_iov_retry_never_rewrites_final),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
