/* Unit tests: option parsing shared by the plugin and the commands
 * (parse.h, s3_config_set): strict counts, sizes, booleans, one meaning
 * per S3 option name, and a refusal that changes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "s3bd/parse.h"
#include "s3bd/s3.h"

static void
test_unsigned_is_strict (void **state)
{
  static const char *const bad[] = {
    "",    " 1", "+1", "-1", "1k", "1 ", "0x10", "1.5", "18446744073709551616",
    "abc",
  };
  uint64_t v = 7;

  assert_int_equal (parse_unsigned ("0", 10, 10, &v), 0);
  assert_int_equal (v, 0);
  assert_int_equal (parse_unsigned ("10", 10, 10, &v), 0);
  assert_int_equal (v, 10);
  assert_int_equal (parse_unsigned ("11", 10, 10, &v), -1);
  assert_int_equal (v, 10);
  assert_int_equal (parse_unsigned ("0755", 8, 07777, &v), 0);
  assert_int_equal (v, 0755);
  assert_int_equal (parse_unsigned ("8", 8, 07777, &v), -1);
  assert_int_equal (parse_unsigned ("18446744073709551615", 10, UINT64_MAX, &v),
                    0);
  assert_true (v == UINT64_MAX);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    {
      v = 42;
      assert_int_equal (parse_unsigned (bad[i], 10, UINT64_MAX, &v), -1);
      assert_int_equal (v, 42);
    }
}

static void
test_size_takes_suffixes (void **state)
{
  static const struct
  {
    const char *s;
    uint64_t v;
  } good[] = {
    { "0", 0 },           { "4096", 4096 },
    { "4k", 4096 },       { "4K", 4096 },
    { "1M", 1 << 20 },    { "2G", 2ULL << 30 },
    { "1T", 1ULL << 40 }, { "16777215T", 16777215ULL << 40 },
  };
  static const char *const bad[]
      = { "", "-1", "1KB", "1x", " 1M", "16777216T", "1.5M", "M" };
  uint64_t v;

  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    {
      assert_int_equal (parse_size (good[i].s, &v), 0);
      assert_true (v == good[i].v);
    }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    {
      v = 42;
      assert_int_equal (parse_size (bad[i], &v), -1);
      assert_int_equal (v, 42);
    }
}

static void
test_bool_words (void **state)
{
  bool b;

  for (const char *const *w
       = (const char *const[]){ "1", "true", "YES", "On", NULL };
       *w; w++)
    {
      b = false;
      assert_int_equal (parse_bool (*w, &b), 0);
      assert_true (b);
    }
  for (const char *const *w
       = (const char *const[]){ "0", "false", "No", "OFF", NULL };
       *w; w++)
    {
      b = true;
      assert_int_equal (parse_bool (*w, &b), 0);
      assert_false (b);
    }
  b = true;
  assert_int_equal (parse_bool ("2", &b), -1);
  assert_int_equal (parse_bool ("", &b), -1);
  assert_int_equal (parse_bool ("truee", &b), -1);
  assert_true (b);
}

static void
test_count_says_what_it_expected (void **state)
{
  struct s3bd_error err = { 0 };
  uint64_t v = 3;

  assert_int_equal (parse_count ("1k", 1, 100, &v, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_string_equal (err.msg,
                       "expected a whole number from 1 to 100, got '1k'");
  assert_int_equal (v, 3);
  assert_int_equal (parse_count ("0", 1, 100, &v, &err), -1);
  assert_int_equal (parse_count ("100", 1, 100, &v, &err), 0);
  assert_int_equal (v, 100);
}

/* Every name sets its field, with the meaning documented. */
static void
test_s3_config_names (void **state)
{
  struct s3_config c;
  struct s3bd_error err = { 0 };

  memset (&c, 0, sizeof c);
  assert_int_equal (s3_config_set (&c, "endpoint", "http://127.0.0.1:1", &err),
                    0);
  assert_string_equal (c.endpoint, "http://127.0.0.1:1");
  assert_int_equal (s3_config_set (&c, "region", "eu-west-1", &err), 0);
  assert_string_equal (c.region, "eu-west-1");
  assert_int_equal (s3_config_set (&c, "profile", "p", &err), 0);
  assert_string_equal (c.creds.profile, "p");
  assert_int_equal (s3_config_set (&c, "ca-file", "/x.pem", &err), 0);
  assert_string_equal (c.ca_file, "/x.pem");
  assert_int_equal (s3_config_set (&c, "path-style", "true", &err), 0);
  assert_int_equal (c.addressing, S3_ADDR_PATH);
  assert_int_equal (s3_config_set (&c, "path-style", "false", &err), 0);
  assert_int_equal (c.addressing, S3_ADDR_VIRTUAL);
  assert_int_equal (s3_config_set (&c, "tls-verify", "false", &err), 0);
  assert_true (c.no_verify_tls);
  assert_int_equal (s3_config_set (&c, "tls-verify", "on", &err), 0);
  assert_false (c.no_verify_tls);
  assert_int_equal (s3_config_set (&c, "anonymous", "yes", &err), 0);
  assert_true (c.creds.anonymous);
  assert_int_equal (s3_config_set (&c, "connections", "32", &err), 0);
  assert_int_equal (c.max_connections, 32);
  assert_int_equal (s3_config_set (&c, "retries", "5", &err), 0);
  assert_int_equal (c.max_attempts, 5);
  /* timeout: the whole request's deadline, in seconds, everywhere. */
  assert_int_equal (s3_config_set (&c, "timeout", "20", &err), 0);
  assert_int_equal (c.retry_budget_ms, 20000);
  assert_int_equal (s3_config_set (&c, "connect-timeout", "3", &err), 0);
  assert_int_equal (c.connect_timeout_ms, 3000);
  assert_int_equal (s3_config_set (&c, "stall-timeout", "2", &err), 0);
  assert_int_equal (c.stall_timeout_s, 2);
  /* Not an S3 option: the caller's to judge. */
  assert_int_equal (s3_config_set (&c, "cache-size", "1G", &err), 1);
  assert_int_equal (s3_config_set (&c, "timeout-ms", "5000", &err), 1);
}

/* A bad value is refused with a reason and changes nothing. */
static void
test_s3_config_refusals_change_nothing (void **state)
{
  static const struct
  {
    const char *name, *value, *why;
  } bad[] = {
    { "retries", "1k", "expected a whole number from 1 to 100, got '1k'" },
    { "retries", "0", "expected a whole number from 1 to 100, got '0'" },
    { "retries", "101", "expected a whole number from 1 to 100, got '101'" },
    { "connections", "-1", "expected a whole number from 1 to 1024" },
    { "timeout", "60s", "expected a whole number from 1 to 86400" },
    { "timeout", "86401", "expected a whole number from 1 to 86400" },
    { "connect-timeout", "601", "expected a whole number from 1 to 600" },
    { "stall-timeout", "0", "expected a whole number from 1 to 600" },
    { "stall-timeout", "5s", "expected a whole number from 1 to 600" },
    { "path-style", "maybe", "expected true or false, got 'maybe'" },
    { "tls-verify", "", "expected true or false" },
    { "anonymous", "2", "expected true or false" },
    { "endpoint", "", "must not be empty" },
    { "region", "", "must not be empty" },
  };
  struct s3_config c, before;
  struct s3bd_error err;

  memset (&c, 0, sizeof c);
  c.max_attempts = 8;
  c.retry_budget_ms = 60000;
  c.connect_timeout_ms = 5000;
  c.max_connections = 64;
  c.endpoint = "http://127.0.0.1:9";
  c.region = "us-east-1";
  before = c;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    {
      memset (&err, 0, sizeof err);
      assert_int_equal (s3_config_set (&c, bad[i].name, bad[i].value, &err),
                        -1);
      assert_int_equal (err.code, S3BD_EINVAL);
      if (strstr (err.msg, bad[i].why) == NULL)
        fail_msg ("%s=%s: got '%s', want '%s'", bad[i].name, bad[i].value,
                  err.msg, bad[i].why);
      assert_memory_equal (&c, &before, sizeof c);
    }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_unsigned_is_strict),
    cmocka_unit_test (test_size_takes_suffixes),
    cmocka_unit_test (test_bool_words),
    cmocka_unit_test (test_count_says_what_it_expected),
    cmocka_unit_test (test_s3_config_names),
    cmocka_unit_test (test_s3_config_refusals_change_nothing),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
