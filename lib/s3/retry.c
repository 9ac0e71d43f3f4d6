/* s3bd: the retry policy.  See include/s3bd/retry.h.
 *
 * Which failures are worth another try: the ones where the same request
 * may well succeed a moment later (the connection broke, the server was
 * busy or failed internally, it asked us to slow down).  Never one where
 * the answer is about the request itself: 403 (credentials, a skewed
 * clock), 404, 412 (the object changed), 416 (the range is wrong).
 *
 * The delay is "full jitter" (AWS Architecture Blog, "Exponential Backoff
 * and Jitter"): uniform in [0, min(cap, base * 2^(attempt-1))], which
 * spreads many clients retrying at once better than a fixed backoff.
 */
#include <string.h>

#include <curl/curl.h>

#include "s3bd/retry.h"

static bool
curl_code_is_transient (int code)
{
  switch ((CURLcode)code)
    {
    case CURLE_COULDNT_RESOLVE_HOST: /* DNS can fail for a moment */
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT: /* also the low-speed limit */
    case CURLE_PARTIAL_FILE:       /* body shorter than announced */
    case CURLE_RECV_ERROR:         /* connection reset */
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:       /* a kept-alive connection closed */
    case CURLE_SSL_CONNECT_ERROR: /* handshake cut; not a bad cert */
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: /* stream reset by the server */ return true;
    default: return false;
    }
}

/* S3 error codes that mean "try again", whatever the status says. */
static const char *const transient_s3_codes[] = {
  "RequestTimeout",
  "SlowDown",
  "InternalError",
  "ServiceUnavailable",
};

bool
retry_is_transient (int curl_code, int status, const char *s3_code)
{
  size_t i;

  if (curl_code != 0)
    return curl_code_is_transient (curl_code);

  switch (status)
    {
    case 403:
    case 404:
    case 412:
    case 416: return false;
    case 408: /* Request Timeout */
    case 429: /* Too Many Requests */
    case 500:
    case 502:
    case 503:
    case 504: return true;
    default: break;
    }
  if (status < 400 || s3_code == NULL)
    return false;
  for (i = 0; i < sizeof transient_s3_codes / sizeof *transient_s3_codes; i++)
    if (strcmp (s3_code, transient_s3_codes[i]) == 0)
      return true;
  return false;
}

unsigned
retry_delay_ms (const struct retry_policy *p, unsigned attempt, uint64_t rnd)
{
  unsigned shift = attempt > 0 ? attempt - 1 : 0;
  uint64_t ceiling;

  /* base < 2^32, so base << 32 still fits in 64 bits, and unless base is
   * 0 it is over any cap: doubling further changes nothing.
   */
  if (shift > 32)
    shift = 32;
  ceiling = (uint64_t)p->base_ms << shift;
  if (ceiling > p->cap_ms)
    ceiling = p->cap_ms;

  /* Scale the top 32 bits of rnd onto [0, ceiling]: ceiling + 1 <= 2^32,
   * so the product fits, and rnd = UINT64_MAX gives ceiling itself.
   */
  return (unsigned)(((rnd >> 32) * (ceiling + 1)) >> 32);
}

bool
retry_allowed (const struct retry_policy *p, unsigned attempts,
               uint64_t elapsed_ms, unsigned delay_ms)
{
  if (attempts >= p->max_attempts)
    return false;
  return elapsed_ms <= p->budget_ms && delay_ms <= p->budget_ms - elapsed_ms;
}
