/* s3bd: the retry policy.  See include/s3bd/retry.h.
 *
 * Which failures are worth another try: the ones where the same request
 * may well succeed a moment later (the connection broke, the server was
 * busy or failed internally, it asked us to slow down, an answer came
 * back broken).  Never one where the answer is about the request itself:
 * 403 (credentials, a skewed clock), 404, 412 (the object changed), 416
 * (the range is wrong).
 *
 * The delay is "full jitter" (AWS Architecture Blog, "Exponential Backoff
 * and Jitter"; the SDKs' standard mode): uniform in [0, min(cap, base *
 * 2^(attempt-1))], which spreads many clients retrying at once better
 * than a fixed backoff.  Throttling has a longer base than other
 * failures, as in the SDKs: the server asked for fewer requests.
 *
 * The quota is the SDKs' too: every retry takes tokens from one bucket
 * per client (more after a timeout, which cost the most time), every
 * success gives back what its retries took (retry.h says why all of it,
 * where the SDKs give back the last retry's).  Scattered failures cost
 * nothing in the end; when most requests fail the bucket runs dry, and
 * requests then fail at their first error instead of each spending its
 * whole deadline on an endpoint that is gone.
 */
#include <string.h>

#include <curl/curl.h>

#include "s3bd/retry.h"

static enum retry_class
curl_code_class (int code)
{
  switch ((CURLcode)code)
    {
    case CURLE_OPERATION_TIMEDOUT: /* also the stall limit */
      return RETRY_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST: /* DNS can fail for a moment */
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE: /* body shorter than announced */
    case CURLE_RECV_ERROR:   /* connection reset */
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:       /* a kept-alive connection closed */
    case CURLE_SSL_CONNECT_ERROR: /* handshake cut; not a bad cert */
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: /* stream reset by the server */
      return RETRY_TRANSIENT;
    default: return RETRY_NEVER;
    }
}

/* S3 error codes that mean "try again", whatever the status says. */
static const char *const transient_s3_codes[] = {
  "RequestTimeout",
  "InternalError",
  "ServiceUnavailable",
};

/* And those that mean "fewer requests, please". */
static const char *const throttling_s3_codes[] = {
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestThrottled",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "BandwidthLimitExceeded",
};

static bool
in (const char *code, const char *const *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp (code, list[i]) == 0)
      return true;
  return false;
}

#define IN(code, list) in ((code), (list), sizeof (list) / sizeof *(list))

enum retry_class
retry_classify (int curl_code, int status, const char *s3_code)
{
  const char *code = s3_code ? s3_code : "";

  if (curl_code != 0)
    return curl_code_class (curl_code);
  switch (status)
    {
    case 403:
    case 404:
    case 412:
    case 416: return RETRY_NEVER;
    default: break;
    }
  if (status >= 400 && IN (code, throttling_s3_codes))
    return RETRY_THROTTLING;
  switch (status)
    {
    case 429: return RETRY_THROTTLING; /* Too Many Requests */
    case 408:                          /* Request Timeout */
    case 500:
    case 502:
    case 503:
    case 504: return RETRY_TRANSIENT;
    default: break;
    }
  if (status >= 400 && IN (code, transient_s3_codes))
    return RETRY_TRANSIENT;
  return RETRY_NEVER;
}

bool
retry_is_transient (int curl_code, int status, const char *s3_code)
{
  return retry_classify (curl_code, status, s3_code) != RETRY_NEVER;
}

unsigned
retry_delay_ms (const struct retry_policy *p, enum retry_class why,
                unsigned attempt, uint64_t rnd)
{
  unsigned shift = attempt > 0 ? attempt - 1 : 0;
  uint64_t base = why == RETRY_THROTTLING ? p->throttle_base_ms : p->base_ms;
  uint64_t ceiling;

  /* base < 2^32, so base << 32 still fits in 64 bits, and unless base is
   * 0 it is over any cap: doubling further changes nothing.
   */
  if (shift > 32)
    shift = 32;
  ceiling = base << shift;
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
  /* An attempt that would start at the deadline could only time out. */
  return elapsed_ms < p->budget_ms && delay_ms < p->budget_ms - elapsed_ms;
}

void
retry_quota_init (struct retry_quota *q, unsigned capacity)
{
  atomic_init (&q->tokens, capacity);
  q->capacity = capacity;
}

unsigned
retry_cost (enum retry_class why)
{
  return why == RETRY_TIMEOUT ? RETRY_TIMEOUT_COST : RETRY_COST;
}

bool
retry_quota_take (struct retry_quota *q, unsigned cost)
{
  unsigned have = atomic_load (&q->tokens);

  do
    {
      if (have < cost)
        return false;
    }
  while (!atomic_compare_exchange_weak (&q->tokens, &have, have - cost));
  return true;
}

void
retry_quota_success (struct retry_quota *q, unsigned taken)
{
  unsigned give = taken ? taken : RETRY_SUCCESS_REFUND;
  unsigned have = atomic_load (&q->tokens), want;

  /* have <= capacity: nothing adds past it. */
  do
    want = give < q->capacity - have ? have + give : q->capacity;
  while (!atomic_compare_exchange_weak (&q->tokens, &have, want));
}

unsigned
retry_quota_tokens (struct retry_quota *q)
{
  return atomic_load (&q->tokens);
}
