/* Unit tests of lib/s3/retry.c: which failures are retried and as what,
 * how long to wait, when to give up, and the retry quota: its arithmetic,
 * its use from several threads, and what it does to a throttling storm
 * and to a dead endpoint.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "s3bd/retry.h"

struct case_
{
  int curl_code;
  int status;
  const char *s3_code;
  enum retry_class want;
};

#define NEVER RETRY_NEVER
#define TRANSIENT RETRY_TRANSIENT
#define THROTTLING RETRY_THROTTLING
#define TIMEOUT RETRY_TIMEOUT

static const struct case_ cases[] = {
  /* Transfers that broke. */
  { CURLE_COULDNT_CONNECT, 0, "", TRANSIENT },
  { CURLE_COULDNT_RESOLVE_HOST, 0, "", TRANSIENT },
  { CURLE_OPERATION_TIMEDOUT, 0, "", TIMEOUT },
  { CURLE_PARTIAL_FILE, 200, "", TRANSIENT },
  { CURLE_RECV_ERROR, 0, "", TRANSIENT },
  { CURLE_SEND_ERROR, 0, "", TRANSIENT },
  { CURLE_GOT_NOTHING, 0, "", TRANSIENT },
  { CURLE_SSL_CONNECT_ERROR, 0, "", TRANSIENT },
  { CURLE_HTTP2_STREAM, 0, "", TRANSIENT },
  /* Transfers that fail the same way every time. */
  { CURLE_UNSUPPORTED_PROTOCOL, 0, "", NEVER },
  { CURLE_URL_MALFORMAT, 0, "", NEVER },
  { CURLE_PEER_FAILED_VERIFICATION, 0, "", NEVER },
  { CURLE_WRITE_ERROR, 206, "", NEVER }, /* our callback said stop */
  { CURLE_OUT_OF_MEMORY, 0, "", NEVER },
  { CURLE_ABORTED_BY_CALLBACK, 0, "", NEVER },
  { CURLE_SSL_CACERT_BADFILE, 0, "", NEVER },
  /* Answers. */
  { 0, 200, "", NEVER },
  { 0, 206, "", NEVER },
  { 0, 0, "", NEVER },
  { 0, 500, "", TRANSIENT },
  { 0, 500, "InternalError", TRANSIENT },
  { 0, 502, "", TRANSIENT },
  { 0, 503, "SlowDown", THROTTLING },
  { 0, 503, "", TRANSIENT },
  { 0, 503, "ServiceUnavailable", TRANSIENT },
  { 0, 504, "", TRANSIENT },
  { 0, 429, "", THROTTLING },
  { 0, 400, "Throttling", THROTTLING },
  { 0, 400, "ThrottlingException", THROTTLING },
  { 0, 503, "RequestLimitExceeded", THROTTLING },
  { 0, 408, "", TRANSIENT },
  { 0, 400, "RequestTimeout", TRANSIENT },
  { 0, 400, "SlowDown", THROTTLING },
  { 0, 409, "InternalError", TRANSIENT },
  { 0, 400, "ServiceUnavailable", TRANSIENT },
  { 0, 400, "", NEVER },
  { 0, 400, "InvalidArgument", NEVER },
  { 0, 400, "AuthorizationHeaderMalformed", NEVER },
  { 0, 400, NULL, NEVER },
  { 0, 501, "NotImplemented", NEVER },
  { 0, 505, "", NEVER },
  /* A code is an error's: never on a success. */
  { 0, 200, "SlowDown", NEVER },
  /* Never, whatever the code says. */
  { 0, 403, "RequestTimeTooSkewed", NEVER },
  { 0, 403, "SignatureDoesNotMatch", NEVER },
  { 0, 403, "AccessDenied", NEVER },
  { 0, 403, "SlowDown", NEVER },
  { 0, 404, "NoSuchKey", NEVER },
  { 0, 404, "InternalError", NEVER },
  { 0, 412, "PreconditionFailed", NEVER },
  { 0, 416, "InvalidRange", NEVER },
  { 0, 416, "ServiceUnavailable", NEVER },
  /* Codes are exact. */
  { 0, 400, "slowdown", NEVER },
  { 0, 400, "SlowDownPlease", NEVER },
};

static void
test_classification (void **state)
{
  size_t i;

  for (i = 0; i < sizeof cases / sizeof *cases; i++)
    {
      const struct case_ *c = &cases[i];
      enum retry_class got
          = retry_classify (c->curl_code, c->status, c->s3_code);

      if (got != c->want)
        fail_msg ("curl %d, HTTP %d, \"%s\": expected class %d, got %d",
                  c->curl_code, c->status, c->s3_code ? c->s3_code : "(null)",
                  c->want, got);
      if (retry_is_transient (c->curl_code, c->status, c->s3_code)
          != (c->want != NEVER))
        fail_msg ("curl %d, HTTP %d: retry_is_transient disagrees",
                  c->curl_code, c->status);
    }
}

/* min(cap, base * 2^(attempt-1)), by doubling. */
static uint64_t
ceiling_of (const struct retry_policy *p, enum retry_class why,
            unsigned attempt)
{
  uint64_t c = why == RETRY_THROTTLING ? p->throttle_base_ms : p->base_ms;
  unsigned i;

  for (i = 1; i < attempt && c < p->cap_ms; i++)
    c *= 2;
  return c < p->cap_ms ? c : p->cap_ms;
}

/* A fixed xorshift sequence: the same numbers every run. */
static uint64_t
next_random (uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void
check_delays (const struct retry_policy *p, enum retry_class why)
{
  uint64_t seed = 0x9e3779b97f4a7c15;
  unsigned attempt;

  for (attempt = 1; attempt <= 70; attempt++)
    {
      uint64_t c = ceiling_of (p, why, attempt);
      unsigned prev = 0;
      int k;

      /* The ends of the range are reached. */
      assert_int_equal (retry_delay_ms (p, why, attempt, 0), 0);
      assert_int_equal (retry_delay_ms (p, why, attempt, UINT64_MAX), c);
      /* Half the random range gives half the ceiling, give or take 1. */
      {
        uint64_t half = retry_delay_ms (p, why, attempt, UINT64_MAX / 2 + 1);

        assert_true (half * 2 >= c && half * 2 <= c + 1);
      }
      /* Monotonic in rnd, never above the ceiling (so never above cap). */
      for (k = 0; k <= 64; k++)
        {
          uint64_t rnd = k == 64 ? UINT64_MAX : (uint64_t)k << 58;
          unsigned d = retry_delay_ms (p, why, attempt, rnd);

          assert_true (d >= prev);
          assert_true (d <= c);
          assert_true (d <= p->cap_ms);
          prev = d;
        }
      for (k = 0; k < 1000; k++)
        assert_true (retry_delay_ms (p, why, attempt, next_random (&seed))
                     <= c);
    }
}

/* The client's defaults (s3.c), the AWS SDKs' standard mode. */
static const struct retry_policy defaults
    = { UINT32_MAX, 100, 500, 20000, 60000 };

static void
test_delay_bounds (void **state)
{
  const struct retry_policy huge = { 8, UINT32_MAX, UINT32_MAX, UINT32_MAX, 0 };
  const struct retry_policy odd = { 8, 3, 7, 1000, 0 };
  const struct retry_policy big_base
      = { 8, 1u << 31, 1u << 30, 4000000000u, 0 };
  const struct retry_policy zero = { 8, 0, 0, 5000, 0 };
  const struct retry_policy no_cap = { 8, 100, 500, 0, 0 };
  static const enum retry_class classes[]
      = { RETRY_TRANSIENT, RETRY_THROTTLING, RETRY_TIMEOUT };

  for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
    {
      check_delays (&defaults, classes[i]);
      check_delays (&huge, classes[i]);
      check_delays (&odd, classes[i]);
      check_delays (&big_base, classes[i]);
    }

  /* Transient failures and timeouts: 100, 200, 400 ... 12800 ms, then
   * 20 s (the SDKs' cap) from the 9th retry on.
   */
  assert_int_equal (retry_delay_ms (&defaults, RETRY_TRANSIENT, 1, UINT64_MAX),
                    100);
  assert_int_equal (retry_delay_ms (&defaults, RETRY_TIMEOUT, 2, UINT64_MAX),
                    200);
  assert_int_equal (retry_delay_ms (&defaults, RETRY_TRANSIENT, 8, UINT64_MAX),
                    12800);
  assert_int_equal (retry_delay_ms (&defaults, RETRY_TRANSIENT, 9, UINT64_MAX),
                    20000);
  assert_int_equal (
      retry_delay_ms (&defaults, RETRY_TRANSIENT, UINT32_MAX, UINT64_MAX),
      20000);
  /* Throttling: 500, 1000 ... 16000 ms, then 20 s from the 7th. */
  assert_int_equal (retry_delay_ms (&defaults, RETRY_THROTTLING, 1, UINT64_MAX),
                    500);
  assert_int_equal (retry_delay_ms (&defaults, RETRY_THROTTLING, 6, UINT64_MAX),
                    16000);
  assert_int_equal (retry_delay_ms (&defaults, RETRY_THROTTLING, 7, UINT64_MAX),
                    20000);
  /* Attempt 0 is taken as the first retry. */
  assert_int_equal (retry_delay_ms (&defaults, RETRY_TRANSIENT, 0, UINT64_MAX),
                    100);

  assert_int_equal (retry_delay_ms (&zero, RETRY_TRANSIENT, 40, UINT64_MAX), 0);
  assert_int_equal (retry_delay_ms (&no_cap, RETRY_THROTTLING, 3, UINT64_MAX),
                    0);
}

/* Full jitter: over many draws the delays spread evenly over the range. */
static void
test_delay_uniform (void **state)
{
  unsigned buckets[10] = { 0 };
  uint64_t seed = 42;
  const unsigned n = 100000;
  unsigned i;

  for (i = 0; i < n; i++)
    {
      unsigned d = retry_delay_ms (&defaults, RETRY_TRANSIENT, 20,
                                   next_random (&seed));

      buckets[d * 10 / 20001]++;
    }
  for (i = 0; i < 10; i++)
    assert_true (buckets[i] > n / 10 * 9 / 10 && buckets[i] < n / 10 * 11 / 10);
}

static void
test_allowed (void **state)
{
  const struct retry_policy p = { 3, 100, 500, 20000, 60000 };
  const struct retry_policy once = { 1, 100, 500, 20000, 60000 };
  const struct retry_policy none = { 0, 100, 500, 20000, 60000 };

  /* Attempt counts: after 1 and 2 attempts, one more; after 3, no. */
  assert_true (retry_allowed (&p, 1, 0, 0));
  assert_true (retry_allowed (&p, 2, 0, 0));
  assert_false (retry_allowed (&p, 3, 0, 0));
  assert_false (retry_allowed (&p, 4, 0, 0));
  assert_false (retry_allowed (&once, 1, 0, 0));
  assert_false (retry_allowed (&none, 1, 0, 0));
  /* No count: only the deadline says no. */
  assert_true (retry_allowed (&defaults, 1000000, 59998, 1));

  /* The deadline includes the delay; an attempt must start before it. */
  assert_true (retry_allowed (&p, 1, 59000, 999));
  assert_false (retry_allowed (&p, 1, 59000, 1000));
  assert_false (retry_allowed (&p, 1, 59000, 1001));
  assert_false (retry_allowed (&p, 1, 60001, 0));
  assert_false (retry_allowed (&p, 1, 60000, 0));
  assert_true (retry_allowed (&p, 1, 59999, 0));
  assert_false (retry_allowed (&p, 1, 0, 60000));
  assert_true (retry_allowed (&p, 1, 0, 59999));
  assert_false (retry_allowed (&p, 1, UINT64_MAX, UINT32_MAX));
  assert_false (retry_allowed (&p, 1, UINT64_MAX - 10, 100));
}

/* The quota's arithmetic: the SDKs' 500 tokens, 5 a retry, 10 after a
 * timeout, back on success.
 */
static void
test_quota (void **state)
{
  struct retry_quota q;
  unsigned n = 0;

  assert_int_equal (retry_cost (RETRY_TRANSIENT), 5);
  assert_int_equal (retry_cost (RETRY_THROTTLING), 5);
  assert_int_equal (retry_cost (RETRY_TIMEOUT), 10);

  retry_quota_init (&q, RETRY_QUOTA_TOKENS);
  assert_int_equal (retry_quota_tokens (&q), 500);
  /* Nothing above the capacity, however many successes. */
  for (int i = 0; i < 10; i++)
    retry_quota_success (&q, 0);
  retry_quota_success (&q, 10);
  assert_int_equal (retry_quota_tokens (&q), 500);

  /* 100 retries, then none. */
  while (retry_quota_take (&q, RETRY_COST))
    n++;
  assert_int_equal (n, 100);
  assert_int_equal (retry_quota_tokens (&q), 0);
  assert_false (retry_quota_take (&q, RETRY_COST));
  assert_int_equal (retry_quota_tokens (&q), 0);

  /* A success at the first try gives 1, after retries all they took. */
  retry_quota_success (&q, 0);
  assert_int_equal (retry_quota_tokens (&q), 1);
  assert_false (retry_quota_take (&q, RETRY_COST)); /* none taken */
  assert_int_equal (retry_quota_tokens (&q), 1);
  retry_quota_success (&q, RETRY_TIMEOUT_COST);
  assert_int_equal (retry_quota_tokens (&q), 11);
  assert_true (retry_quota_take (&q, RETRY_TIMEOUT_COST));
  assert_int_equal (retry_quota_tokens (&q), 1);
  retry_quota_success (&q, 3 * RETRY_COST);
  assert_int_equal (retry_quota_tokens (&q), 16);

  /* Near the top, a refund stops at the capacity. */
  retry_quota_init (&q, 12);
  assert_true (retry_quota_take (&q, 5));
  retry_quota_success (&q, 10);
  assert_int_equal (retry_quota_tokens (&q), 12);
}

struct taker
{
  struct retry_quota *q;
  unsigned taken;
};

static void *
take_all (void *arg)
{
  struct taker *t = arg;

  while (retry_quota_take (t->q, RETRY_COST))
    {
      t->taken++;
      if (t->taken % 3 == 0)
        retry_quota_success (t->q, 0);
    }
  return NULL;
}

/* Engines in several threads share a client's quota: however they
 * interleave, no token is taken twice and none is lost.
 */
static void
test_quota_threads (void **state)
{
  struct retry_quota q;
  struct taker t[4];
  pthread_t th[4];
  unsigned taken = 0, refunds = 0;

  retry_quota_init (&q, 100000);
  for (int i = 0; i < 4; i++)
    {
      t[i] = (struct taker){ &q, 0 };
      assert_int_equal (pthread_create (&th[i], NULL, take_all, &t[i]), 0);
    }
  for (int i = 0; i < 4; i++)
    {
      pthread_join (th[i], NULL);
      taken += t[i].taken;
      refunds += t[i].taken / 3;
    }
  /* Everything taken was there: the capacity plus the refunds, less
   * what is left (fewer than one retry's worth).
   */
  assert_true (retry_quota_tokens (&q) < RETRY_COST);
  assert_int_equal ((uint64_t)taken * RETRY_COST,
                    100000 + refunds - retry_quota_tokens (&q));
}

/* The policy as a whole: `requests` requests, `inflight` at a time, in
 * rounds where each makes an attempt that fails with probability p_fail
 * (a fixed sequence).  A success gives back its tokens and makes room
 * for the next request.  Returns how many ended in error; *retries, how
 * many retries were made.  Time is not simulated: the deadline is
 * tested above, and a storm does not reach it.
 */
static unsigned
simulate (double p_fail, unsigned requests, unsigned inflight,
          unsigned *retries)
{
  struct retry_quota q;
  unsigned taken[64];
  uint64_t seed = 7;
  unsigned failed = 0, started = 0, done = 0, n = 0;

  assert_true (inflight <= 64);
  retry_quota_init (&q, RETRY_QUOTA_TOKENS);
  *retries = 0;
  while (done < requests)
    {
      unsigned next = 0;

      while (n < inflight && started < requests)
        {
          taken[n++] = 0;
          started++;
        }
      for (unsigned i = 0; i < n; i++)
        {
          double u = (double)(next_random (&seed) >> 11) / (double)(1ULL << 53);

          if (u >= p_fail)
            {
              retry_quota_success (&q, taken[i]);
              done++;
            }
          else if (!retry_quota_take (&q, RETRY_COST))
            {
              failed++;
              done++;
            }
          else
            {
              (*retries)++;
              taken[next++] = taken[i] + RETRY_COST;
            }
        }
      n = next;
    }
  return failed;
}

/* A 30% SlowDown storm over thousands of GETs, 64 in flight: every one
 * succeeds.  When most fail (90%), the quota caps the retries: some
 * requests fail instead of each retrying nine times.  A dead endpoint:
 * after 100 retries the quota is spent, and every request after that
 * fails at its first attempt.
 */
static void
test_storm_and_dead_endpoint (void **state)
{
  unsigned retries, failed;

  assert_int_equal (simulate (0.3, 10000, 64, &retries), 0);
  assert_true (retries > 3500 && retries < 5000); /* ~10000 * 0.3/0.7 */
  assert_int_equal (simulate (0.3, 10000, 1, &retries), 0);

  failed = simulate (0.9, 10000, 64, &retries);
  assert_true (failed > 5000);
  assert_true (retries < 10000); /* not 90000 */

  assert_int_equal (simulate (1.0, 1000, 64, &retries), 1000);
  assert_int_equal (retries, 100);
  assert_int_equal (simulate (1.0, 1000, 1, &retries), 1000);
  assert_int_equal (retries, 100);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_classification),
    cmocka_unit_test (test_delay_bounds),
    cmocka_unit_test (test_delay_uniform),
    cmocka_unit_test (test_allowed),
    cmocka_unit_test (test_quota),
    cmocka_unit_test (test_quota_threads),
    cmocka_unit_test (test_storm_and_dead_endpoint),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
