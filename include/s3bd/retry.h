/* s3bd: the retry policy, pure functions of their inputs (and, for the
 * quota, of a counter) so that they can be tested without a network.
 *
 * It follows the AWS SDKs' "standard" retry mode: which failures are
 * retried, exponential backoff with full jitter and a capped delay, and
 * a retry quota shared by every request of a client, so that when most
 * requests fail (a dead endpoint) they stop retrying and fail fast, while
 * scattered failures (a throttling storm) are retried for as long as each
 * request's deadline allows.
 *
 * One difference from the SDKs: a request that succeeds gives back every
 * token its retries took, not only its last retry's.  With the SDKs'
 * accounting (5 a retry, 5 back for the last, 1 for a first-try success)
 * the quota breaks even at a failure rate of 30.9%: a 30% SlowDown storm
 * is at the edge, and a 40% one drained it in tests/fault-proxy.py's
 * hands.  Here what a storm costs is the tokens held by requests still
 * retrying (the engine keeps those to max_inflight), far below 500 at
 * 30% (a 45% storm read through), reaching it when most requests fail;
 * a dead endpoint, where nothing succeeds, spends it in 100 retries.
 */
#ifndef S3BD_RETRY_H
#define S3BD_RETRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* What kind of failure an attempt had: it sets the delay and the cost. */
enum retry_class
{
  RETRY_NEVER = 0,  /* the answer is about the request: no retry */
  RETRY_TRANSIENT,  /* 5xx, resets, a broken or inconsistent answer */
  RETRY_THROTTLING, /* SlowDown, 429: the server asks for less */
  RETRY_TIMEOUT,    /* no answer in time (connect, stall, deadline) */
};

struct retry_policy
{
  unsigned max_attempts;     /* first try included; UINT_MAX: no count */
  unsigned base_ms;          /* backoff base of transient failures */
  unsigned throttle_base_ms; /* of throttling */
  unsigned cap_ms;           /* one delay at most */
  unsigned budget_ms;        /* the deadline: from submission to the end of
                                the last attempt */
};

/* The SDKs' retry quota ("token bucket"). */
#define RETRY_QUOTA_TOKENS 500 /* at the start, and at most */
#define RETRY_COST 5           /* taken by a retry */
#define RETRY_TIMEOUT_COST 10  /* taken by a retry after a timeout */
#define RETRY_SUCCESS_REFUND 1 /* given back by a first-try success */

struct retry_quota
{
  atomic_uint tokens;
  unsigned capacity;
};

/* What an attempt's failure is: curl_code the transfer's CURLcode (0 when
 * a response arrived), status the HTTP status and s3_code the S3 error
 * code ("" or NULL if none).
 */
enum retry_class retry_classify (int curl_code, int status,
                                 const char *s3_code);

/* retry_classify (...) != RETRY_NEVER. */
bool retry_is_transient (int curl_code, int status, const char *s3_code);

/* The delay before attempt number `attempt` + 1 (attempt 1: the first
 * retry): full jitter, uniform in [0, min(cap, base * 2^(attempt-1))],
 * with the base of the failure's class, drawn from rnd (any 64-bit random
 * value).
 */
unsigned retry_delay_ms (const struct retry_policy *p, enum retry_class why,
                         unsigned attempt, uint64_t rnd);

/* Whether to make attempt number attempts+1, given the time spent since
 * submission and the delay it would wait first: within the count and
 * with the delay ending before the deadline (strictly: an attempt
 * started at the deadline could only time out).
 */
bool retry_allowed (const struct retry_policy *p, unsigned attempts,
                    uint64_t elapsed_ms, unsigned delay_ms);

void retry_quota_init (struct retry_quota *q, unsigned capacity);

/* The tokens a retry after this failure takes. */
unsigned retry_cost (enum retry_class why);

/* Takes cost tokens for a retry; false, taking none, when fewer are left.
 * Thread-safe.
 */
bool retry_quota_take (struct retry_quota *q, unsigned cost);

/* A request succeeded: gives back all that its retries took (taken), or
 * RETRY_SUCCESS_REFUND when it succeeded at its first attempt (taken 0);
 * never above the capacity.  Thread-safe.
 */
void retry_quota_success (struct retry_quota *q, unsigned taken);

unsigned retry_quota_tokens (struct retry_quota *q);

#endif
