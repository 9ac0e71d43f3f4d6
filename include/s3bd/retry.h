/* s3bd: the retry policy, a pure function of its inputs so it can be
 * tested without a network.
 */
#ifndef S3BD_RETRY_H
#define S3BD_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy
{
  unsigned max_attempts; /* first try included */
  unsigned base_ms;
  unsigned cap_ms;
  unsigned budget_ms; /* whole request, first try included */
};

/* Whether a failed attempt may be retried: curl_code is the transfer's
 * CURLcode (0 when a response arrived), status the HTTP status and
 * s3_code the S3 error code ("" if none).
 */
bool retry_is_transient (int curl_code, int status, const char *s3_code);

/* The delay before attempt number `attempt` (1 = the first retry): full
 * jitter, uniform in [0, min(cap, base * 2^(attempt-1))], drawn from rnd
 * (any 64-bit random value).
 */
unsigned retry_delay_ms (const struct retry_policy *p, unsigned attempt,
                         uint64_t rnd);

/* Whether to make attempt number attempts+1, given the time spent so far
 * and the delay it would wait first.
 */
bool retry_allowed (const struct retry_policy *p, unsigned attempts,
                    uint64_t elapsed_ms, unsigned delay_ms);

#endif
