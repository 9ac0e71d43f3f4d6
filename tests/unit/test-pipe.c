/* s3bd: unit tests for the pure functions of lib/serve/pipe.c, the order
 * and the split that docs/nbdkit-s3bd-plugin.md ("Pipe mode") promises a
 * user can recompute: the permutation of a seed and an epoch against
 * vectors computed from the documented formula (in Python, offline), a
 * permutation for every n, index order without a seed; and the split by
 * bytes: contiguous parts, each object once, balanced within the largest
 * object, by count when every object is empty.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/pipe.h"

static void
test_permutation_vectors (void **state)
{
  /* From the docs' formula, computed in Python. */
  static const uint64_t s1234_e0[] = { 3, 0, 8, 6, 5, 7, 9, 4, 2, 1 };
  static const uint64_t s1234_e1[] = { 1, 9, 2, 5, 7, 3, 4, 6, 0, 8 };
  static const uint64_t s0_e0[] = { 6, 3, 2, 9, 8, 1, 4, 7, 0, 5 };
  uint64_t p[10];

  (void)state;
  pipe_permutation (10, true, 1234, 0, p);
  assert_memory_equal (p, s1234_e0, sizeof p);
  pipe_permutation (10, true, 1234, 1, p);
  assert_memory_equal (p, s1234_e1, sizeof p);
  pipe_permutation (10, true, 0, 0, p);
  assert_memory_equal (p, s0_e0, sizeof p);
  pipe_permutation (10, false, 1234, 7, p);
  for (uint64_t i = 0; i < 10; i++)
    assert_int_equal (p[i], i);
}

static void
test_permutation_is_one (void **state)
{
  uint64_t p[300];
  bool seen[300];

  (void)state;
  for (uint64_t n = 0; n <= 300; n += 7)
    for (uint64_t e = 0; e < 3; e++)
      {
        pipe_permutation (n, true, 42, e, p);
        memset (seen, 0, sizeof seen);
        for (uint64_t i = 0; i < n; i++)
          {
            assert_true (p[i] < n);
            assert_false (seen[p[i]]);
            seen[p[i]] = true;
          }
      }
}

static void
test_part_by_bytes (void **state)
{
  static const uint64_t size[]
      = { 100, 5000, 0, 9000000, 3, 3000000, 131072, 131072, 1, 700000 };
  const uint64_t n = sizeof size / sizeof size[0];
  uint64_t total = 0, cum, bytes[4], largest = 9000000;

  (void)state;
  for (uint64_t k = 0; k < n; k++)
    total += size[k];
  for (uint32_t parts = 1; parts <= 4; parts++)
    {
      uint32_t prev = 0;

      memset (bytes, 0, sizeof bytes);
      cum = 0;
      for (uint64_t k = 0; k < n; k++)
        {
          uint32_t part = pipe_part_of (k, n, cum, size[k], total, parts);

          assert_true (part < parts);
          assert_true (part >= prev); /* contiguous, in order */
          prev = part;
          bytes[part] += size[k];
          cum += size[k];
        }
      for (uint32_t q = 0; q < parts; q++)
        assert_true (bytes[q] <= total / parts + largest);
    }
  /* Two equal halves split exactly. */
  assert_int_equal (pipe_part_of (0, 2, 0, 10, 20, 2), 0);
  assert_int_equal (pipe_part_of (1, 2, 10, 10, 20, 2), 1);
  /* All empty: by count. */
  for (uint64_t k = 0; k < 6; k++)
    assert_int_equal (pipe_part_of (k, 6, 0, 0, 0, 3), k / 2);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_permutation_vectors),
    cmocka_unit_test (test_permutation_is_one),
    cmocka_unit_test (test_part_by_bytes),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
