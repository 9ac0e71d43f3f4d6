/* s3bd: unit tests for lib/common's containers: the vector grows,
 * reserves, detaches and rejects sizes that overflow; the hash map finds
 * what it holds and nothing else, keeps every key reachable through
 * colliding hashes, wrap-around runs and backward-shift removals, grows
 * without losing a key, and agrees with a plain array over many random
 * inserts and removals.  And the error buffer: a message too long for it
 * keeps its start and its reason, losing its middle.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3bd/error.h"

/* The containers are private to lib/: the test reaches in by path. */
#include "../../lib/common/hashmap.h"
#include "../../lib/common/vector.h"

DEFINE_VECTOR (int_vector, int);

struct pair
{
  uint64_t a, b;
};

DEFINE_VECTOR (pair_vector, struct pair);

static void
test_vector_append (void **state)
{
  struct int_vector v = VECTOR_INIT;
  int *p;

  (void)state;
  for (int i = 0; i < 100000; i++)
    assert_int_equal (int_vector_append (&v, i), 0);
  assert_int_equal (v.len, 100000);
  assert_true (v.cap >= v.len);
  for (int i = 0; i < 100000; i++)
    assert_int_equal (v.ptr[i], i);
  p = int_vector_detach (&v);
  assert_non_null (p);
  assert_null (v.ptr);
  assert_int_equal (v.len, 0);
  assert_int_equal (v.cap, 0);
  free (p);
  int_vector_free (&v); /* an empty vector frees too */
}

static void
test_vector_reserve (void **state)
{
  struct pair_vector v = VECTOR_INIT;
  struct pair *before, *z;

  (void)state;
  assert_int_equal (pair_vector_reserve (&v, 1000), 0);
  assert_true (v.cap >= 1000);
  before = v.ptr;
  /* Within the reservation the array never moves. */
  for (uint64_t i = 0; i < 1000; i++)
    assert_int_equal (pair_vector_append (&v, (struct pair){ i, ~i }), 0);
  assert_ptr_equal (v.ptr, before);
  z = pair_vector_push_zero (&v);
  assert_non_null (z);
  assert_int_equal (z->a, 0);
  assert_int_equal (z->b, 0);
  assert_int_equal (v.len, 1001);
  assert_int_equal (v.ptr[999].b, ~UINT64_C (999));
  pair_vector_free (&v);
}

static void
test_vector_overflow (void **state)
{
  struct pair_vector v = VECTOR_INIT;
  size_t cap = 4;
  char *p;

  (void)state;
  assert_int_equal (pair_vector_append (&v, (struct pair){ 1, 2 }), 0);
  /* n * sizeof (struct pair) overflows: refused, vector untouched. */
  errno = 0;
  assert_int_equal (pair_vector_reserve (&v, SIZE_MAX / 8), -1);
  assert_int_equal (errno, ENOMEM);
  assert_int_equal (pair_vector_reserve (&v, SIZE_MAX), -1);
  assert_int_equal (v.len, 1);
  assert_int_equal (v.ptr[0].b, 2);
  pair_vector_free (&v);

  /* vector_grow on a caller's own fields, asking for nothing. */
  p = malloc (4);
  assert_non_null (p);
  assert_ptr_equal (vector_grow (p, &cap, 4, 0, 1), p);
  assert_null (vector_grow (p, &cap, 4, SIZE_MAX - 3, 1));
  assert_int_equal (cap, 4);
  free (p);
}

/* ---- The hash map ---- */

/* Keys are strings in an array; values are index + 1. */
struct keys
{
  char (*s)[16];
  size_t n;
};

struct str_key
{
  const struct keys *k;
  const char *s;
};

static bool
str_eq (const void *ctx, uint64_t value)
{
  const struct str_key *q = ctx;

  return strcmp (q->k->s[value - 1], q->s) == 0;
}

static uint64_t
fnv (const char *s)
{
  uint64_t h = UINT64_C (14695981039346656037);

  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * UINT64_C (1099511628211);
  return h;
}

static uint64_t
get (const struct hashmap *m, const struct keys *k, const char *s,
     uint64_t (*hash) (const char *))
{
  struct str_key q = { k, s };
  struct hashmap_slot *slot = hashmap_lookup (m, hash (s), str_eq, &q);

  return slot ? slot->value : 0;
}

static uint64_t
same_hash (const char *s)
{
  (void)s;
  return 42;
}

static void
test_map_empty (void **state)
{
  struct hashmap m = { 0 };

  (void)state;
  assert_null (hashmap_lookup (&m, 1, NULL, NULL));
  assert_int_equal (hashmap_remove (&m, 1, NULL, NULL), 0);
  assert_int_equal (hashmap_reserve (&m, 0), 0);
  hashmap_free (&m);
  hashmap_free (&m);
}

/* Every key hashes alike: one run of probes holds them all, and the
 * equality callback tells them apart.
 */
static void
test_map_collisions (void **state)
{
  char s[64][16];
  struct keys k = { s, 64 };
  struct hashmap m = { 0 };

  (void)state;
  for (size_t i = 0; i < 64; i++)
    {
      snprintf (s[i], sizeof s[i], "key-%zu", i);
      assert_int_equal (get (&m, &k, s[i], same_hash), 0);
      assert_int_equal (hashmap_insert (&m, 42, i + 1), 0);
    }
  assert_int_equal (m.n, 64);
  for (size_t i = 0; i < 64; i++)
    assert_int_equal (get (&m, &k, s[i], same_hash), i + 1);
  assert_int_equal (get (&m, &k, "absent", same_hash), 0);
  /* Remove every other key from the middle of the run. */
  for (size_t i = 0; i < 64; i += 2)
    {
      struct str_key q = { &k, s[i] };

      assert_int_equal (hashmap_remove (&m, 42, str_eq, &q), i + 1);
      assert_int_equal (hashmap_remove (&m, 42, str_eq, &q), 0);
    }
  assert_int_equal (m.n, 32);
  for (size_t i = 0; i < 64; i++)
    assert_int_equal (get (&m, &k, s[i], same_hash), i % 2 ? i + 1 : 0);
  hashmap_free (&m);
}

/* Identity keys (eq NULL), some homed at the table's last slots so that
 * runs wrap around to slot 0; removal must shift across the wrap.
 */
static void
test_map_wrap (void **state)
{
  struct hashmap m = { 0 };
  uint64_t keys[8];
  size_t nk = 0;

  (void)state;
  assert_int_equal (hashmap_reserve (&m, 8), 0);
  assert_int_equal (m.cap, 16);
  /* Find keys whose home is slot 15 (the last). */
  for (uint64_t x = 0; nk < 8; x++)
    if (hashmap_home_ (&m, x) == 15)
      keys[nk++] = x;
  for (size_t i = 0; i < nk; i++)
    assert_int_equal (hashmap_insert (&m, keys[i], i + 1), 0);
  assert_int_equal (m.cap, 16); /* reserved: no growth */
  for (size_t i = 0; i < nk; i++)
    {
      assert_int_equal (hashmap_remove (&m, keys[i], NULL, NULL), i + 1);
      for (size_t j = i + 1; j < nk; j++)
        {
          struct hashmap_slot *s = hashmap_lookup (&m, keys[j], NULL, NULL);

          assert_non_null (s);
          assert_int_equal (s->value, j + 1);
        }
    }
  assert_int_equal (m.n, 0);
  for (size_t i = 0; i < m.cap; i++)
    assert_int_equal (m.slots[i].value, 0);
  hashmap_free (&m);
}

/* Many keys through several growths, then random inserts and removals
 * checked against a plain array of what should be there.
 */
static void
test_map_many (void **state)
{
  enum
  {
    N = 200000,
    UNIVERSE = 1 << 16
  };
  struct hashmap m = { 0 };
  uint64_t *present = calloc (UNIVERSE, sizeof *present);
  uint64_t x = 88172645463325252u, stored = 0, seen;

  (void)state;
  assert_non_null (present);
  for (uint64_t i = 0; i < N; i++)
    {
      assert_null (hashmap_lookup (&m, i * 7919, NULL, NULL));
      assert_int_equal (hashmap_insert (&m, i * 7919, i + 1), 0);
    }
  assert_int_equal (m.n, N);
  assert_true (m.cap >= 2 * (size_t)N); /* at most half full */
  for (uint64_t i = 0; i < N; i++)
    {
      struct hashmap_slot *s = hashmap_lookup (&m, i * 7919, NULL, NULL);

      assert_non_null (s);
      assert_int_equal (s->value, i + 1);
    }
  hashmap_free (&m);

  for (int round = 0; round < 400000; round++)
    {
      uint64_t key, v;

      x ^= x << 13; /* xorshift64: a fixed sequence */
      x ^= x >> 7;
      x ^= x << 17;
      key = x % UNIVERSE;
      v = hashmap_remove (&m, key, NULL, NULL);
      assert_int_equal (v, present[key]);
      if (v)
        {
          present[key] = 0;
          stored--;
        }
      else
        {
          present[key] = (uint64_t)round + 1;
          assert_int_equal (hashmap_insert (&m, key, present[key]), 0);
          stored++;
        }
      assert_int_equal (m.n, stored);
    }
  seen = 0;
  for (size_t i = 0; i < m.cap; i++)
    if (m.slots[i].value)
      {
        assert_int_equal (m.slots[i].value, present[m.slots[i].hash]);
        seen++;
      }
  assert_int_equal (seen, stored);
  for (uint64_t key = 0; key < UNIVERSE; key++)
    {
      struct hashmap_slot *s = hashmap_lookup (&m, key, NULL, NULL);

      assert_int_equal (s ? s->value : 0, present[key]);
    }
  hashmap_free (&m);
  free (present);
}

/* String keys under a real hash, with the value changed in place. */
static void
test_map_strings (void **state)
{
  enum
  {
    N = 5000
  };
  char (*s)[16] = calloc (N, sizeof *s);
  struct keys k = { s, N };
  struct hashmap m = { 0 };

  (void)state;
  assert_non_null (s);
  for (size_t i = 0; i < N; i++)
    {
      snprintf (s[i], sizeof s[i], "d/%zu", i);
      assert_int_equal (hashmap_insert (&m, fnv (s[i]), i + 1), 0);
    }
  for (size_t i = 0; i < N; i++)
    {
      struct str_key q = { &k, s[i] };
      struct hashmap_slot *slot = hashmap_lookup (&m, fnv (s[i]), str_eq, &q);

      assert_non_null (slot);
      assert_int_equal (slot->value, i + 1);
    }
  assert_int_equal (get (&m, &k, "d/5000", fnv), 0);
  assert_int_equal (get (&m, &k, "", fnv), 0);
  hashmap_free (&m);
  free (s);
}

/* ---- The error buffer ---- */

/* "[...N bytes...]" in msg: N, and the bytes before and after it. */
static size_t
cut_of (const char *msg, size_t *head, size_t *tail)
{
  const char *m = strstr (msg, "[...");
  char *e;
  size_t n;

  assert_non_null (m);
  n = strtoul (m + 4, &e, 10);
  assert_true (strncmp (e, " bytes...]", 10) == 0);
  *head = (size_t)(m - msg);
  *tail = strlen (e + 10);
  return n;
}

static void
test_error_short_message_unchanged (void **state)
{
  struct s3bd_error err = { 0 };

  assert_int_equal (s3bd_fail (&err, S3BD_ENOKEY, "key %s: %s", "a", "gone"),
                    -1);
  assert_int_equal (err.code, S3BD_ENOKEY);
  assert_string_equal (err.msg, "key a: gone");
  s3bd_error_prefix (&err, "manifest entry %d", 3);
  assert_string_equal (err.msg, "manifest entry 3: key a: gone");
  /* Exactly full: no cut. */
  memset (&err, 0, sizeof err);
  s3bd_fail (&err, S3BD_EINVAL, "%0*d", (int)sizeof err.msg - 1, 0);
  assert_int_equal (strlen (err.msg), sizeof err.msg - 1);
  assert_null (strstr (err.msg, "[..."));
}

/* The case: a 2,000-byte key in a manifest used to take the
 * reason with it.
 */
static void
test_error_long_key_keeps_reason (void **state)
{
  struct s3bd_error err = { 0 };
  char key[2001];
  size_t head, tail, cut, total;

  memset (key, 'k', 2000);
  key[2000] = '\0';
  s3bd_fail (&err, S3BD_ENOKEY, "manifest entry %d: s3://b/%s: no such key", 7,
             key);
  total
      = strlen ("manifest entry 7: s3://b/") + 2000 + strlen (": no such key");
  assert_true (strlen (err.msg) <= sizeof err.msg - 1);
  assert_true (strncmp (err.msg, "manifest entry 7: s3://b/kkk", 28) == 0);
  assert_true (strstr (err.msg, "k: no such key") != NULL);
  assert_string_equal (err.msg + strlen (err.msg) - 13, ": no such key");
  cut = cut_of (err.msg, &head, &tail);
  assert_int_equal (head + cut + tail, total);
  /* The buffer is used, not just the ends. */
  assert_true (strlen (err.msg) >= sizeof err.msg - 4);

  /* A prefix in front of an already long message: the reason stays. */
  s3bd_error_prefix (&err, "augmented manifest line %d: attribute \"%s\"", 9,
                     key);
  assert_true (
      strncmp (err.msg, "augmented manifest line 9: attribute \"kk", 40) == 0);
  assert_string_equal (err.msg + strlen (err.msg) - 13, ": no such key");
  assert_true (strlen (err.msg) <= sizeof err.msg - 1);
}

/* A cut never splits a UTF-8 sequence: both sides stay whole characters. */
static void
test_error_cut_keeps_utf8 (void **state)
{
  struct s3bd_error err = { 0 };
  char key[3 * 700 + 1];
  size_t head, tail, cut, i;

  for (i = 0; i < 700; i++)
    memcpy (key + 3 * i, "\xe2\x82\xac", 3); /* U+20AC, 3 bytes */
  key[3 * 700] = '\0';
  for (int shift = 0; shift < 3; shift++)
    {
      s3bd_fail (&err, S3BD_EINVAL, "%.*s%s: bad", shift, "ab", key);
      cut = cut_of (err.msg, &head, &tail);
      assert_int_equal (head + cut + tail, (size_t)shift + 2100 + 5);
      assert_int_equal ((head - (size_t)shift) % 3, 0);
      assert_int_equal ((tail - 5) % 3, 0);
      assert_string_equal (err.msg + strlen (err.msg) - 5, ": bad");
    }
}

/* An argument may be the message being replaced. */
static void
test_error_argument_is_the_message (void **state)
{
  struct s3bd_error err = { 0 };
  char key[1001];

  s3bd_fail (&err, S3BD_EIO, "short");
  s3bd_fail (&err, S3BD_EIO, "again: %s", err.msg);
  assert_string_equal (err.msg, "again: short");
  memset (key, 'x', 1000);
  key[1000] = '\0';
  s3bd_fail (&err, S3BD_EIO, "%s", key);
  s3bd_fail (&err, S3BD_EIO, "wrapped: %s: reason", err.msg);
  assert_true (strncmp (err.msg, "wrapped: xxx", 12) == 0);
  assert_string_equal (err.msg + strlen (err.msg) - 8, ": reason");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_vector_append),
    cmocka_unit_test (test_vector_reserve),
    cmocka_unit_test (test_vector_overflow),
    cmocka_unit_test (test_map_empty),
    cmocka_unit_test (test_map_collisions),
    cmocka_unit_test (test_map_wrap),
    cmocka_unit_test (test_map_many),
    cmocka_unit_test (test_map_strings),
    cmocka_unit_test (test_error_short_message_unchanged),
    cmocka_unit_test (test_error_long_key_keeps_reason),
    cmocka_unit_test (test_error_cut_keeps_utf8),
    cmocka_unit_test (test_error_argument_is_the_message),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
