/* s3bd: the response side of the transfer engine (engine.c).
 *
 * Every check of a response that decides whether bytes may be handed
 * out: curl's body and header callbacks, which put a GET body into the
 * caller's buffers and report buffers final only for a 2xx response with
 * exactly the range asked for, and the judging of a finished attempt
 * (success, a transient failure to retry, or a final error described
 * once in the request's err).  Kept apart from the queues and the loop
 * so that what makes a response acceptable can be read in one place.
 *
 * A 2xx answer to a ranged GET that is not the range asked for (a 200
 * with the whole object, a Content-Range missing, garbage, shifted or
 * with the wrong total) is known from its headers, before its first body
 * byte: its body is never written anywhere, the transfer is stopped, and
 * the attempt is retried like any transient failure, as is a body
 * shorter or longer than the range.  One bad answer from a proxy or load
 * balancer costs a retry, never an error or a wrong byte.
 *
 * The curl callbacks and s3_response_judge only ask curl for the status
 * and Content-Length; s3_response_body and s3_response_decide take them
 * as arguments and decide everything else, so that tests can feed them
 * any response without a server.
 *
 * Everything here runs on the engine's thread, inside curl or just after
 * a transfer ends; nothing here takes the engine's lock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "s3bd/s3xml.h"
#include "engineint.h"
#include "s3int.h"
#include "common/strbuf.h"

/* An error body larger than this is cut: error documents are small. */
#define ERROR_BODY_MAX (64 * 1024)

/* ---- curl callbacks ---- */

/* Whether a 2xx answer to a ranged GET is the range asked for, from its
 * status, Content-Length (cl, -1: none) and Content-Range: 1 yes; 2
 * maybe, a 200 at offset 0 of unknown length (the body's length tells);
 * -1 no, with the reason in why (n bytes; why may be NULL when n is 0);
 * -2 no, and never will be: the range runs past the object's end, and
 * the server answered the part of it there is.
 */
static int
answer_is_range (const struct attempt *a, long status, curl_off_t cl, char *why,
                 size_t n)
{
  const struct s3_request *r = a->r;
  uint64_t last = r->range_off + r->range_len - 1;

  if (status == 200)
    {
      /* A server that ignores Range sends the whole object: the range
       * only when the range is the whole object.
       */
      if (r->range_off == 0 && (cl < 0 || (uint64_t)cl == r->range_len)
          && (r->expect_size == 0 || r->expect_size == r->range_len))
        return cl < 0 ? 2 : 1;
      if (cl >= 0)
        snprintf (why, n,
                  "server ignored the range (HTTP 200, %" PRIu64 " bytes)",
                  (uint64_t)cl);
      else
        snprintf (why, n,
                  "server ignored the range (HTTP 200, length "
                  "unknown)");
      return -1;
    }
  if (status != 206)
    {
      snprintf (why, n, "server ignored the range (HTTP %ld)", status);
      return -1;
    }
  if (a->range_hdr == 0)
    {
      snprintf (why, n,
                "wrong Content-Range in the response: asked for "
                "bytes %" PRIu64 "-%" PRIu64 ", got none",
                r->range_off, last);
      return -1;
    }
  if (a->range_hdr < 0)
    {
      snprintf (why, n,
                "garbage Content-Range in the response: asked for "
                "bytes %" PRIu64 "-%" PRIu64 ", got '%s'",
                r->range_off, last, a->range_raw);
      return -1;
    }
  if (a->range_first == r->range_off && a->range_last < last
      && a->range_last + 1 == a->range_total
      && (r->expect_size == 0 || r->expect_size == a->range_total))
    {
      snprintf (why, n,
                "range runs past the object's end: asked for bytes %" PRIu64
                "-%" PRIu64 ", got Content-Range bytes %" PRIu64 "-%" PRIu64
                "/%" PRIu64,
                r->range_off, last, a->range_first, a->range_last,
                a->range_total);
      return -2;
    }
  if (a->range_first != r->range_off || a->range_last != last)
    {
      snprintf (why, n,
                "wrong Content-Range in the response: asked for "
                "bytes %" PRIu64 "-%" PRIu64 ", got bytes %" PRIu64 "-%" PRIu64
                "/%" PRIu64,
                r->range_off, last, a->range_first, a->range_last,
                a->range_total);
      return -1;
    }
  if (a->range_total <= last
      || (r->expect_size && a->range_total != r->expect_size))
    {
      if (r->expect_size)
        snprintf (why, n,
                  "wrong Content-Range total in the response: bytes "
                  "%" PRIu64 "-%" PRIu64 "/%" PRIu64 ", the object has %" PRIu64
                  " bytes",
                  a->range_first, a->range_last, a->range_total,
                  r->expect_size);
      else
        snprintf (why, n,
                  "wrong Content-Range total in the response: bytes "
                  "%" PRIu64 "-%" PRIu64 "/%" PRIu64 " ends past the object",
                  a->range_first, a->range_last, a->range_total);
      return -1;
    }
  if (cl >= 0 && (uint64_t)cl != r->range_len)
    {
      snprintf (why, n,
                "Content-Length %" PRIu64 " for bytes %" PRIu64 "-%" PRIu64,
                (uint64_t)cl, r->range_off, last);
      return -1;
    }
  return 1;
}

/* The same, decided once per attempt, at its first body byte: by then
 * every header is in.
 */
static int
body_is_range (struct attempt *a, long status, curl_off_t cl)
{
  if (a->body_ok == 0)
    a->body_ok = answer_is_range (a, status, cl, NULL, 0);
  return a->body_ok;
}

size_t
s3_response_body (struct attempt *a, const char *data, size_t n, long status,
                  curl_off_t content_length)
{
  struct s3_request *r = a->r;

  if (status < 200 || status >= 300)
    {
      if (a->errbody.len + n <= ERROR_BODY_MAX)
        strbuf_add (&a->errbody, data, n);
      return n;
    }
  if (r->ranged && body_is_range (a, status, content_length) < 0)
    {
      /* Not the bytes asked for: none of them goes anywhere. */
      a->refused = true;
      return 0;
    }
  if (r->iov)
    {
      size_t done = 0;

      while (done < n)
        {
          size_t room, k, pos = a->written + done;

          if (a->iov_i >= r->iovcnt)
            {
              a->overflow = true; /* more than the buffers hold */
              return 0;
            }
          room = r->iov[a->iov_i].iov_len - a->iov_off;
          k = n - done < room ? n - done : room;
          /* Bytes already reported final are dropped, never rewritten:
           * a reader may be copying them.
           */
          if (pos + k > a->final_bytes)
            {
              size_t skip = pos < a->final_bytes ? a->final_bytes - pos : 0;

              memcpy ((char *)r->iov[a->iov_i].iov_base + a->iov_off + skip,
                      data + done + skip, k - skip);
            }
          done += k;
          a->iov_off += k;
          if (a->iov_off == r->iov[a->iov_i].iov_len)
            {
              a->iov_i++;
              a->iov_off = 0;
            }
        }
      if (r->progress && a->iov_i > a->final
          && body_is_range (a, status, content_length) == 1)
        {
          a->final = a->iov_i;
          a->final_bytes = a->written + n - a->iov_off;
          r->progress (r, a->final, r->arg);
        }
    }
  else if (r->buf)
    {
      if (n > r->buf_len - a->written)
        {
          /* Never write past the caller's buffer: stop the transfer. */
          a->overflow = true;
          return 0;
        }
      memcpy ((char *)r->buf + a->written, data, n);
    }
  else
    {
      strbuf_add (&a->growbody, data, n);
      if (!strbuf_ok (&a->growbody))
        return 0;
    }
  a->written += n;
  return n;
}

size_t
s3_response_write_cb (char *data, size_t size, size_t nmemb, void *arg)
{
  struct attempt *a = arg;
  long status = 0;
  curl_off_t cl = -1;

  /* Neither fails on a handle in a transfer; if one did, status 0 keeps
   * the bytes out of the caller's buffers, and cl -1 keeps a 200 from
   * passing for the range, and s3_response_judge reports the failure.
   */
  (void)curl_easy_getinfo (a->easy, CURLINFO_RESPONSE_CODE, &status);
  (void)curl_easy_getinfo (a->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  return s3_response_body (a, data, size * nmemb, status, cl);
}

static void
copy_header_value (char *dst, size_t dstsize, const char *v, size_t len)
{
  while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
    len--;
  while (len && *v == ' ')
    {
      v++;
      len--;
    }
  if (len >= dstsize)
    len = dstsize - 1;
  memcpy (dst, v, len);
  dst[len] = '\0';
}

static bool
header_is (const char *line, size_t len, const char *name, size_t *vstart)
{
  size_t n = strlen (name);

  if (len <= n || line[n] != ':' || strncasecmp (line, name, n) != 0)
    return false;
  *vstart = n + 1;
  return true;
}

/* "bytes FIRST-LAST/TOTAL", decimal, FIRST <= LAST: the only form a
 * 206 for one range may have here (an unknown total, "*", is refused as
 * well: the total is checked).  sscanf would take signs, spaces and
 * numbers that overflow.
 */
static bool
parse_content_range (const char *s, uint64_t *first, uint64_t *last,
                     uint64_t *total)
{
  uint64_t *out[3] = { first, last, total };
  const char sep[3] = { '-', '/', '\0' };

  if (strncasecmp (s, "bytes ", 6) != 0)
    return false;
  s += 6;
  for (int i = 0; i < 3; i++)
    {
      uint64_t v = 0;

      if (*s < '0' || *s > '9')
        return false;
      for (; *s >= '0' && *s <= '9'; s++)
        {
          if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return false;
          v = v * 10 + (uint64_t)(*s - '0');
        }
      if (*s++ != sep[i])
        return false;
      *out[i] = v;
    }
  return *first <= *last;
}

/* A header value from the server, cut to fit and with anything but
 * printable ASCII replaced: it goes into messages and logs.
 */
static void
printable (char *dst, size_t n, const char *src)
{
  size_t i;

  for (i = 0; src[i] && i + 1 < n; i++)
    dst[i] = src[i] >= 0x20 && src[i] < 0x7f && src[i] != '\'' ? src[i] : '?';
  dst[i] = '\0';
}

size_t
s3_response_header_cb (char *line, size_t size, size_t nmemb, void *arg)
{
  struct attempt *a = arg;
  struct s3_request *r = a->r;
  size_t len = size * nmemb, v;
  char val[128];

  if (len >= 5 && memcmp (line, "HTTP/", 5) == 0)
    {
      /* A new response (after 100 Continue, say): forget the last one. */
      r->etag[0] = r->last_modified[0] = '\0';
      a->range_hdr = 0;
      return len;
    }
  if (header_is (line, len, "ETag", &v))
    copy_header_value (r->etag, sizeof r->etag, line + v, len - v);
  else if (header_is (line, len, "Last-Modified", &v))
    copy_header_value (r->last_modified, sizeof r->last_modified, line + v,
                       len - v);
  else if (header_is (line, len, "Content-Range", &v))
    {
      copy_header_value (val, sizeof val, line + v, len - v);
      a->range_hdr = parse_content_range (val, &a->range_first, &a->range_last,
                                          &a->range_total)
                         ? 1
                         : -1;
      if (a->range_hdr < 0)
        printable (a->range_raw, sizeof a->range_raw, val);
    }
  return len;
}

/* ---- Judging a finished attempt ---- */

/* Fills r->err from an HTTP error response.  Returns the verdict class:
 * RETRY for a transient failure, DONE_ERROR otherwise.
 */
static enum verdict
http_error (const struct s3_client *c, struct attempt *a, int status)
{
  struct s3_request *r = a->r;
  char code[64] = "", message[400] = "";
  enum s3bd_errcode ec;
  const char *src = creds_source (c->creds);

  if (a->errbody.len)
    s3xml_parse_error (a->errbody.s, a->errbody.len, code, sizeof code, message,
                       sizeof message);
  r->err.http_status = status;
  snprintf (r->err.s3_code, sizeof r->err.s3_code, "%s", code);

  a->why = retry_classify (0, status, code);
  if (a->why != RETRY_NEVER)
    {
      s3bd_fail (&r->err, S3BD_ESERVER, "HTTP %d%s%s%s%s", status,
                 code[0] ? " " : "", code, message[0] ? ": " : "", message);
      return RETRY;
    }
  switch (status)
    {
    case 301:
    case 307:
    case 400:
      if (strcmp (code, "AuthorizationHeaderMalformed") == 0
          || strcmp (code, "PermanentRedirect") == 0 || status != 400)
        {
          s3bd_fail (&r->err, S3BD_EINVAL,
                     "wrong region or endpoint (HTTP %d %s): the bucket is "
                     "not served at %s in region %s%s%s",
                     status, code, c->endpoint, c->region,
                     message[0] ? ": " : "", message);
          return DONE_ERROR;
        }
      break;
    case 403:
      if (strcmp (code, "SignatureDoesNotMatch") == 0
          || strcmp (code, "InvalidAccessKeyId") == 0
          || strcmp (code, "InvalidToken") == 0
          || strcmp (code, "ExpiredToken") == 0
          || strcmp (code, "RequestTimeTooSkewed") == 0)
        ec = S3BD_EAUTH;
      else
        ec = S3BD_EDENIED;
      if (ec == S3BD_EAUTH)
        s3bd_fail (&r->err, ec,
                   "authentication failed (%s): the server rejected the "
                   "credentials from %s; check the access key and secret",
                   code[0] ? code : "HTTP 403", src);
      else
        s3bd_fail (
            &r->err, ec, "access denied (%s%s%s) with credentials from %s",
            code[0] ? code : "HTTP 403", message[0] ? ": " : "", message, src);
      return DONE_ERROR;
    case 404:
      if (strcmp (code, "NoSuchBucket") == 0)
        s3bd_fail (&r->err, S3BD_ENOBUCKET, "no such bucket");
      else if (strcmp (code, "NoSuchKey") == 0)
        s3bd_fail (&r->err, S3BD_ENOKEY, "no such key");
      else if (code[0] == '\0' && r->method == S3_HEAD)
        /* A HEAD response has no body to tell key from bucket. */
        s3bd_fail (&r->err, S3BD_ENOKEY, "no such key (or no such bucket)");
      else
        s3bd_fail (&r->err, S3BD_EHTTP, "not found (HTTP 404%s%s)",
                   code[0] ? " " : "", code);
      return DONE_ERROR;
    case 412:
      s3bd_fail (&r->err, S3BD_ECHANGED,
                 "object changed since it was indexed: its ETag is no "
                 "longer %s (HTTP 412)",
                 r->if_match ? r->if_match : "?");
      return DONE_ERROR;
    case 416:
      s3bd_fail (&r->err, S3BD_ERANGE,
                 "range not satisfiable (HTTP 416): the object is shorter "
                 "than the range; it may have changed");
      return DONE_ERROR;
    }
  s3bd_fail (&r->err, S3BD_EHTTP, "HTTP %d%s%s%s%s", status, code[0] ? " " : "",
             code, message[0] ? ": " : "", message);
  return DONE_ERROR;
}

/* A broken answer (answer_is_range -1, or a bad body): described, and
 * worth another try.  A range past the object's end (-2) is final.
 */
static enum verdict
protocol_retry (struct attempt *a, const char *why, int answer)
{
  if (answer == -2)
    {
      s3bd_fail (&a->r->err, S3BD_ERANGE, "%s", why);
      return DONE_ERROR;
    }
  s3bd_fail (&a->r->err, S3BD_EPROTO, "%s", why);
  a->why = RETRY_TRANSIENT;
  return RETRY;
}

/* Checks a 2xx response against what was asked for. */
static enum verdict
check_success (struct attempt *a, int status, curl_off_t cl)
{
  struct s3_request *r = a->r;
  char why[256];

  r->content_length = cl >= 0 ? (uint64_t)cl : a->written;
  r->object_size = a->range_hdr > 0 ? a->range_total : r->content_length;

  if (r->method != S3_GET)
    return DONE_OK;
  if (r->ranged)
    {
      /* Again, whole: a body that never started was not judged. */
      int answer = answer_is_range (a, status, cl, why, sizeof why);

      if (answer < 0)
        return protocol_retry (a, why, answer);
      if (a->written != r->range_len)
        {
          snprintf (why, sizeof why, "short body: %zu of %" PRIu64 " bytes",
                    a->written, r->range_len);
          return protocol_retry (a, why, -1);
        }
    }
  else if (r->buf && a->written != r->buf_len)
    {
      snprintf (why, sizeof why, "body of %zu bytes, expected %zu", a->written,
                r->buf_len);
      return protocol_retry (a, why, -1);
    }
  if (!r->buf && !r->iov)
    {
      /* An empty body still gets a buffer, so that callers may parse. */
      strbuf_add (&a->growbody, "", 0);
      r->body_len = a->growbody.len;
      r->body = strbuf_detach (&a->growbody);
      if (r->body == NULL)
        {
          s3bd_fail (&r->err, S3BD_ENOMEM, "out of memory");
          return DONE_ERROR;
        }
    }
  return DONE_OK;
}

enum verdict
s3_response_decide (const struct s3_client *c, struct attempt *a, CURLcode cc,
                    long status, curl_off_t content_length)
{
  struct s3_request *r = a->r;
  char why[256];

  r->status = (int)status;
  s3bd_error_clear (&r->err);

  if (a->refused)
    {
      /* The headers that refused it are still there to say why. */
      int answer = answer_is_range (a, status, content_length, why, sizeof why);

      if (answer >= 0)
        snprintf (why, sizeof why, "not the range asked for");
      return protocol_retry (a, why, answer < 0 ? answer : -1);
    }
  if (a->overflow)
    {
      snprintf (why, sizeof why,
                "response body longer than the %" PRIu64 " bytes asked for",
                r->iov ? r->range_len : (uint64_t)r->buf_len);
      return protocol_retry (a, why, -1);
    }
  if (a->stalled)
    {
      s3bd_fail (&r->err, S3BD_ENET, "stalled: no data for %u s",
                 c->stall_timeout_s);
      a->why = RETRY_TIMEOUT;
      return RETRY;
    }
  if (cc != CURLE_OK)
    {
      if (cc == CURLE_WRITE_ERROR || cc == CURLE_OUT_OF_MEMORY)
        {
          s3bd_fail (&r->err, S3BD_ENOMEM, "out of memory");
          return DONE_ERROR;
        }
      s3bd_fail (&r->err, S3BD_ENET, "%s",
                 a->curl_err[0] ? a->curl_err : curl_easy_strerror (cc));
      if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE
          || cc == CURLE_SSL_CONNECT_ERROR)
        r->err.code = S3BD_EINVAL; /* TLS set-up: not going to heal */
      a->why = retry_classify ((int)cc, 0, "");
      return a->why != RETRY_NEVER ? RETRY : DONE_ERROR;
    }
  if (status >= 200 && status < 300)
    return check_success (a, (int)status, content_length);
  return http_error (c, a, (int)status);
}

enum verdict
s3_response_judge (const struct s3_client *c, struct attempt *a, CURLcode cc)
{
  long status = 0;
  curl_off_t cl = -1;
  CURLcode ic;

  ic = curl_easy_getinfo (a->easy, CURLINFO_RESPONSE_CODE, &status);
  if (ic != CURLE_OK)
    {
      s3bd_error_clear (&a->r->err);
      s3bd_fail (&a->r->err, S3BD_EPROTO,
                 "curl_easy_getinfo CURLINFO_RESPONSE_CODE: %s",
                 curl_easy_strerror (ic));
      return DONE_ERROR;
    }
  /* Unknown (-1) is a valid answer: the length is then what arrived. */
  if (curl_easy_getinfo (a->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl)
      != CURLE_OK)
    cl = -1;
  return s3_response_decide (c, a, cc, status, cl);
}
