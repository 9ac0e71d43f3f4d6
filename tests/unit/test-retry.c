/* Unit tests of lib/retry.c: which failures are retried, how long to wait
 * and when to give up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "s3bd/retry.h"

struct case_
{
  int curl_code;
  int status;
  const char *s3_code;
  bool transient;
};

static const struct case_ cases[] = {
  /* Transfers that broke. */
  { CURLE_COULDNT_CONNECT, 0, "", true },
  { CURLE_COULDNT_RESOLVE_HOST, 0, "", true },
  { CURLE_OPERATION_TIMEDOUT, 0, "", true },
  { CURLE_PARTIAL_FILE, 200, "", true },
  { CURLE_RECV_ERROR, 0, "", true },
  { CURLE_SEND_ERROR, 0, "", true },
  { CURLE_GOT_NOTHING, 0, "", true },
  { CURLE_SSL_CONNECT_ERROR, 0, "", true },
  { CURLE_HTTP2_STREAM, 0, "", true },
  /* Transfers that fail the same way every time. */
  { CURLE_UNSUPPORTED_PROTOCOL, 0, "", false },
  { CURLE_URL_MALFORMAT, 0, "", false },
  { CURLE_PEER_FAILED_VERIFICATION, 0, "", false },
  { CURLE_WRITE_ERROR, 206, "", false }, /* our callback said stop */
  { CURLE_OUT_OF_MEMORY, 0, "", false },
  { CURLE_ABORTED_BY_CALLBACK, 0, "", false },
  { CURLE_SSL_CACERT_BADFILE, 0, "", false },
  /* Answers. */
  { 0, 200, "", false },
  { 0, 206, "", false },
  { 0, 0, "", false },
  { 0, 500, "", true },
  { 0, 500, "InternalError", true },
  { 0, 502, "", true },
  { 0, 503, "SlowDown", true },
  { 0, 503, "ServiceUnavailable", true },
  { 0, 504, "", true },
  { 0, 429, "", true },
  { 0, 408, "", true },
  { 0, 400, "RequestTimeout", true },
  { 0, 400, "SlowDown", true },
  { 0, 409, "InternalError", true },
  { 0, 400, "ServiceUnavailable", true },
  { 0, 400, "", false },
  { 0, 400, "InvalidArgument", false },
  { 0, 400, "AuthorizationHeaderMalformed", false },
  { 0, 400, NULL, false },
  { 0, 501, "NotImplemented", false },
  { 0, 505, "", false },
  /* Never, whatever the code says. */
  { 0, 403, "RequestTimeTooSkewed", false },
  { 0, 403, "SignatureDoesNotMatch", false },
  { 0, 403, "AccessDenied", false },
  { 0, 403, "SlowDown", false },
  { 0, 404, "NoSuchKey", false },
  { 0, 404, "InternalError", false },
  { 0, 412, "PreconditionFailed", false },
  { 0, 416, "InvalidRange", false },
  { 0, 416, "ServiceUnavailable", false },
  /* Codes are exact. */
  { 0, 400, "slowdown", false },
  { 0, 400, "SlowDownPlease", false },
};

static void
test_classification (void **state)
{
  size_t i;

  for (i = 0; i < sizeof cases / sizeof *cases; i++)
    {
      const struct case_ *c = &cases[i];

      if (retry_is_transient (c->curl_code, c->status, c->s3_code)
          != c->transient)
        fail_msg ("curl %d, HTTP %d, \"%s\": expected %s", c->curl_code,
                  c->status, c->s3_code ? c->s3_code : "(null)",
                  c->transient ? "transient" : "not transient");
    }
}

/* min(cap, base * 2^(attempt-1)), by doubling. */
static uint64_t
ceiling_of (const struct retry_policy *p, unsigned attempt)
{
  uint64_t c = p->base_ms;
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
check_delays (const struct retry_policy *p)
{
  uint64_t seed = 0x9e3779b97f4a7c15;
  unsigned attempt;

  for (attempt = 1; attempt <= 70; attempt++)
    {
      uint64_t c = ceiling_of (p, attempt);
      unsigned prev = 0;
      int k;

      /* The ends of the range are reached. */
      assert_int_equal (retry_delay_ms (p, attempt, 0), 0);
      assert_int_equal (retry_delay_ms (p, attempt, UINT64_MAX), c);
      /* Half the random range gives half the ceiling, give or take 1. */
      {
        uint64_t half = retry_delay_ms (p, attempt, UINT64_MAX / 2 + 1);

        assert_true (half * 2 >= c && half * 2 <= c + 1);
      }
      /* Monotonic in rnd, never above the ceiling (so never above cap). */
      for (k = 0; k <= 64; k++)
        {
          uint64_t rnd = k == 64 ? UINT64_MAX : (uint64_t)k << 58;
          unsigned d = retry_delay_ms (p, attempt, rnd);

          assert_true (d >= prev);
          assert_true (d <= c);
          assert_true (d <= p->cap_ms);
          prev = d;
        }
      for (k = 0; k < 1000; k++)
        assert_true (retry_delay_ms (p, attempt, next_random (&seed)) <= c);
    }
}

static void
test_delay_bounds (void **state)
{
  const struct retry_policy defaults = { 8, 100, 5000, 60000 };
  const struct retry_policy huge = { 8, UINT32_MAX, UINT32_MAX, 0 };
  const struct retry_policy odd = { 8, 3, 1000, 0 };
  const struct retry_policy big_base = { 8, 1u << 31, 4000000000u, 0 };
  const struct retry_policy zero = { 8, 0, 5000, 0 };
  const struct retry_policy no_cap = { 8, 100, 0, 0 };

  check_delays (&defaults);
  check_delays (&huge);
  check_delays (&odd);
  check_delays (&big_base);

  /* The defaults: 100, 200, 400 ... then 5000 from the 7th retry on. */
  assert_int_equal (retry_delay_ms (&defaults, 1, UINT64_MAX), 100);
  assert_int_equal (retry_delay_ms (&defaults, 2, UINT64_MAX), 200);
  assert_int_equal (retry_delay_ms (&defaults, 6, UINT64_MAX), 3200);
  assert_int_equal (retry_delay_ms (&defaults, 7, UINT64_MAX), 5000);
  assert_int_equal (retry_delay_ms (&defaults, 33, UINT64_MAX), 5000);
  assert_int_equal (retry_delay_ms (&defaults, UINT32_MAX, UINT64_MAX), 5000);
  /* Attempt 0 is taken as the first retry. */
  assert_int_equal (retry_delay_ms (&defaults, 0, UINT64_MAX), 100);

  assert_int_equal (retry_delay_ms (&zero, 40, UINT64_MAX), 0);
  assert_int_equal (retry_delay_ms (&no_cap, 3, UINT64_MAX), 0);
}

/* Full jitter: over many draws the delays spread evenly over the range. */
static void
test_delay_uniform (void **state)
{
  const struct retry_policy p = { 8, 100, 5000, 60000 };
  unsigned buckets[10] = { 0 };
  uint64_t seed = 42;
  const unsigned n = 100000;
  unsigned i;

  for (i = 0; i < n; i++)
    {
      unsigned d = retry_delay_ms (&p, 20, next_random (&seed));

      buckets[d * 10 / 5001]++;
    }
  for (i = 0; i < 10; i++)
    assert_true (buckets[i] > n / 10 * 9 / 10 && buckets[i] < n / 10 * 11 / 10);
}

static void
test_allowed (void **state)
{
  const struct retry_policy p = { 3, 100, 5000, 60000 };
  const struct retry_policy once = { 1, 100, 5000, 60000 };
  const struct retry_policy none = { 0, 100, 5000, 60000 };

  /* Attempt counts: after 1 and 2 attempts, one more; after 3, no. */
  assert_true (retry_allowed (&p, 1, 0, 0));
  assert_true (retry_allowed (&p, 2, 0, 0));
  assert_false (retry_allowed (&p, 3, 0, 0));
  assert_false (retry_allowed (&p, 4, 0, 0));
  assert_false (retry_allowed (&once, 1, 0, 0));
  assert_false (retry_allowed (&none, 1, 0, 0));

  /* The budget includes the delay, and its edge is allowed. */
  assert_true (retry_allowed (&p, 1, 59000, 1000));
  assert_false (retry_allowed (&p, 1, 59000, 1001));
  assert_false (retry_allowed (&p, 1, 60001, 0));
  assert_true (retry_allowed (&p, 1, 60000, 0));
  assert_false (retry_allowed (&p, 1, 0, 60001));
  assert_false (retry_allowed (&p, 1, UINT64_MAX, UINT32_MAX));
  assert_false (retry_allowed (&p, 1, UINT64_MAX - 10, 100));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_classification),
    cmocka_unit_test (test_delay_bounds),
    cmocka_unit_test (test_delay_uniform),
    cmocka_unit_test (test_allowed),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
