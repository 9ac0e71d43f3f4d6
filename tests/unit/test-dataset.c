/* Unit tests of lib/dataset.c: the key to path rules, collisions and
 * duplicates, manifests and augmented manifests, sharding, and a listing
 * of a million objects.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "s3bd/dataset.h"
#include "s3bd/index.h"

/* ---- Helpers ---- */

static void
add (struct s3_listing *l, const char *key, uint64_t size)
{
  char etag[64];

  snprintf (etag, sizeof etag, "\"etag-%zu\"", l->n);
  assert_int_equal (s3_listing_add (l, key, strlen (key), etag, size,
                                    1700000000 + (int64_t)l->n, 5),
                    0);
}

/* A listing of keys (NULL-terminated), each of size 1 unless it ends in
 * '/' (size 0).
 */
static void
listing_of (struct s3_listing *l, const char *const *keys)
{
  size_t i, n;

  memset (l, 0, sizeof *l);
  for (i = 0; keys[i]; i++)
    {
      n = strlen (keys[i]);
      add (l, keys[i], n > 0 && keys[i][n - 1] == '/' ? 0 : 1);
    }
}

static void
assert_msg (const struct s3bd_error *err, const char *part)
{
  if (strstr (err->msg, part) == NULL)
    fail_msg ("message \"%s\" lacks \"%s\"", err->msg, part);
}

static void
assert_paths (const struct dataset *ds, const char *const *paths)
{
  size_t i;

  for (i = 0; paths[i]; i++)
    {
      if (i >= ds->nfiles)
        fail_msg ("file %zu \"%s\" missing (%zu files)", i, paths[i],
                  ds->nfiles);
      assert_string_equal (ds->files[i].path, paths[i]);
    }
  assert_int_equal (ds->nfiles, i);
}

static void
assert_dirs (const struct dataset *ds, const char *const *dirs)
{
  size_t i;

  for (i = 0; dirs[i]; i++)
    {
      if (i >= ds->ndirs)
        fail_msg ("dir %zu \"%s\" missing (%zu dirs)", i, dirs[i], ds->ndirs);
      assert_string_equal (ds->dirs[i], dirs[i]);
    }
  assert_int_equal (ds->ndirs, i);
}

struct left
{
  const char *key;
  enum ds_reason reason;
};

static void
assert_left (const struct dataset *ds, const struct left *left)
{
  size_t i;

  for (i = 0; left[i].key; i++)
    {
      if (i >= ds->nleft)
        fail_msg ("left-out %zu \"%s\" missing (%zu left)", i, left[i].key,
                  ds->nleft);
      assert_string_equal (ds->left[i].key, left[i].key);
      if (ds->left[i].reason != left[i].reason)
        fail_msg ("%s: reason %s, expected %s", left[i].key,
                  ds_reason_text (ds->left[i].reason),
                  ds_reason_text (left[i].reason));
    }
  assert_int_equal (ds->nleft, i);
}

/* ---- Path rules ---- */

static void
test_reason_text (void **state)
{
  enum ds_reason r;
  const char *t;

  for (r = DS_EMPTY_SEGMENT; r <= DS_KEY_TOO_LONG; r++)
    {
      t = ds_reason_text (r);
      assert_non_null (t);
      assert_true (strlen (t) > 0);
    }
  assert_string_equal (ds_reason_text (DS_EMPTY_SEGMENT), "empty path segment");
  assert_string_equal (ds_reason_text (DS_DOT_SEGMENT),
                       "'.' or '..' path segment");
  assert_string_equal (ds_reason_text (DS_NAME_TOO_LONG),
                       "name longer than 255 bytes");
  assert_string_equal (ds_reason_text (DS_BAD_UTF8), "invalid UTF-8");
  assert_string_equal (ds_reason_text (DS_KEY_TOO_LONG),
                       "key longer than 1024 bytes");
  assert_string_equal (ds_reason_text (DS_MARKER_WITH_DATA),
                       "directory marker with data");
  assert_string_equal (ds_reason_text (DS_FILE_DIR_COLLISION),
                       "file is also a directory");
  assert_string_equal (ds_reason_text (DS_DUPLICATE_PATH), "duplicate path");
  assert_string_equal (ds_reason_text (DS_RESERVED_NAME),
                       "reserved name (lost+found)");
}

struct path_case
{
  const char *path;
  enum ds_reason want;
};

static const struct path_case path_cases[] = {
  { "a", 0 },
  { "a/b/c.jpg", 0 },
  { "...", 0 },
  { ".a", 0 },
  { "a.", 0 },
  { "..a", 0 },
  { "a b/c\td", 0 },
  { "", DS_EMPTY_SEGMENT },
  { "/", DS_EMPTY_SEGMENT },
  { "//", DS_EMPTY_SEGMENT },
  { "/a", DS_EMPTY_SEGMENT },
  { "a//b", DS_EMPTY_SEGMENT },
  { "a/", DS_EMPTY_SEGMENT },
  { ".", DS_DOT_SEGMENT },
  { "..", DS_DOT_SEGMENT },
  { "./a", DS_DOT_SEGMENT },
  { "a/./b", DS_DOT_SEGMENT },
  { "a/../b", DS_DOT_SEGMENT },
  { "a/..", DS_DOT_SEGMENT },
  /* The first problem from the left. */
  { "../a//b", DS_DOT_SEGMENT },
  { "a//..", DS_EMPTY_SEGMENT },
  /* Valid multibyte: é, 日本, U+FFFF, U+D7FF, U+E000, 😀, U+10FFFF. */
  { "caf\xc3\xa9", 0 },
  { "\xe6\x97\xa5\xe6\x9c\xac/x", 0 },
  { "\xef\xbf\xbf", 0 },
  { "\xed\x9f\xbf", 0 },
  { "\xee\x80\x80", 0 },
  { "\xf0\x9f\x98\x80", 0 },
  { "\xf4\x8f\xbf\xbf", 0 },
  { "\xc2\x80", 0 },
  /* Invalid. */
  { "\xff", DS_BAD_UTF8 },
  { "a\xfe", DS_BAD_UTF8 },
  { "\x80", DS_BAD_UTF8 }, /* lone continuation byte */
  { "\xc3", DS_BAD_UTF8 }, /* truncated at the end */
  { "\xc3x", DS_BAD_UTF8 },
  { "\xc3/x", DS_BAD_UTF8 }, /* truncated by a '/' */
  { "\xe6\x97", DS_BAD_UTF8 },
  { "\xe6\x97x", DS_BAD_UTF8 },
  { "\xf0\x9f\x98", DS_BAD_UTF8 },
  { "\xc0\xaf", DS_BAD_UTF8 },                 /* overlong '/' */
  { "\xc1\xbf", DS_BAD_UTF8 },                 /* overlong */
  { "\xe0\x80\xaf", DS_BAD_UTF8 },             /* overlong '/' */
  { "\xe0\x9f\xbf", DS_BAD_UTF8 },             /* overlong U+07FF */
  { "\xf0\x80\x80\xaf", DS_BAD_UTF8 },         /* overlong '/' */
  { "\xf0\x8f\xbf\xbf", DS_BAD_UTF8 },         /* overlong U+FFFF */
  { "\xed\xa0\x80", DS_BAD_UTF8 },             /* surrogate U+D800 */
  { "\xed\xbf\xbf", DS_BAD_UTF8 },             /* surrogate U+DFFF */
  { "\xed\xa0\xbd\xed\xb8\x80", DS_BAD_UTF8 }, /* CESU-8 pair */
  { "\xf4\x90\x80\x80", DS_BAD_UTF8 },         /* U+110000 */
  { "\xf5\x80\x80\x80", DS_BAD_UTF8 },
  { "\xf8\x88\x80\x80\x80", DS_BAD_UTF8 },
  /* Reserved at the top only, exact. */
  { "lost+found", DS_RESERVED_NAME },
  { "lost+found/x", DS_RESERVED_NAME },
  { "a/lost+found", 0 },
  { "lost+found2", 0 },
  { "Lost+found", 0 },
  { "lost+foun", 0 },
};

static void
test_check_path (void **state)
{
  size_t i;
  enum ds_reason r;

  for (i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++)
    {
      r = ds_check_path (path_cases[i].path, strlen (path_cases[i].path));
      if (r != path_cases[i].want)
        fail_msg ("case %zu \"%s\": %s, expected %s", i, path_cases[i].path,
                  r ? ds_reason_text (r) : "valid",
                  path_cases[i].want ? ds_reason_text (path_cases[i].want)
                                     : "valid");
    }
  /* A NUL inside the given length. */
  assert_int_equal (ds_check_path ("a\0b", 3), DS_BAD_UTF8);
  /* Only len bytes count. */
  assert_int_equal (ds_check_path ("a//b", 1), 0);
}

static void
test_check_path_name_length (void **state)
{
  char buf[600];
  size_t i;

  /* 255 bytes is the most a name can have; 256 is too long. */
  memset (buf, 'x', sizeof buf);
  assert_int_equal (ds_check_path (buf, 255), 0);
  assert_int_equal (ds_check_path (buf, 256), DS_NAME_TOO_LONG);
  /* Per segment, not per path. */
  buf[255] = '/';
  assert_int_equal (ds_check_path (buf, 511), 0);
  assert_int_equal (ds_check_path (buf, 512), DS_NAME_TOO_LONG);
  /* Bytes, not characters: 127 "é" and one 'x' are 255 bytes. */
  for (i = 0; i < 127; i++)
    memcpy (buf + 2 * i, "\xc3\xa9", 2);
  buf[254] = 'x';
  assert_int_equal (ds_check_path (buf, 255), 0);
  memcpy (buf + 254, "\xc3\xa9", 2);
  assert_int_equal (ds_check_path (buf, 256), DS_NAME_TOO_LONG);
}

/* ---- Listings ---- */

static void
test_listing_basic (void **state)
{
  static const char *const keys[] = {
    "data/train/", /* the root marker */
    "data/train/b.jpg",     "data/train/a.jpg",  "data/train/sub/",
    "data/train/sub/c.jpg", "data/train/empty/", NULL,
  };
  static const char *const paths[] = { "a.jpg", "b.jpg", "sub/c.jpg", NULL };
  static const char *const dirs[] = { "empty", "sub", NULL };
  static const struct left none[] = { { NULL, 0 } };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "bkt", "data/train/", &l, &err),
                    0);
  s3_listing_free (&l); /* the dataset has its own copies */
  assert_int_equal (ds.nbuckets, 1);
  assert_string_equal (ds.buckets[0], "bkt");
  assert_string_equal (ds.prefix, "data/train/");
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, none);

  /* a.jpg was listed third: its key, etag, size and time follow it. */
  assert_string_equal (ds.files[0].key, "data/train/a.jpg");
  assert_string_equal (ds.files[0].etag, "\"etag-2\"");
  assert_int_equal (ds.files[0].size, 1);
  assert_int_equal (ds.files[0].mtime, 1700000002);
  assert_int_equal (ds.files[0].mtime_nsec, 5);
  assert_int_equal (ds.files[0].bucket, 0);
  assert_string_equal (ds.files[2].key, "data/train/sub/c.jpg");
  dataset_free (&ds);
  assert_null (ds.files);
  dataset_free (&ds); /* twice is harmless */
}

static void
test_listing_prefix_without_slash (void **state)
{
  static const char *const keys[] = {
    "data/tr.txt", "data/train/a.jpg", "data/trx/", "data/tr", NULL,
  };
  static const char *const paths[] = {
    "tr",
    "tr.txt",
    "train/a.jpg",
    NULL,
  };
  static const char *const dirs[] = { "trx", NULL };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "b", "data/tr", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_int_equal (ds.nleft, 0);
  assert_string_equal (ds.prefix, "data/tr");
  dataset_free (&ds);

  /* Without any '/', nothing is removed: "data" lists "data/...". */
  assert_int_equal (dataset_from_listing (&ds, "b", "da", &l, &err), 0);
  assert_string_equal (ds.files[0].path, "data/tr");
  assert_string_equal (ds.dirs[0], "data/trx");
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_empty_prefix (void **state)
{
  static const char *const keys[] = { "b/c", "a", "b/", NULL };
  static const char *const paths[] = { "a", "b/c", NULL };
  static const char *const dirs[] = { "b", NULL };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "b", "", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_int_equal (ds.nleft, 0);
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_empty (void **state)
{
  struct s3_listing l = { 0 };
  struct dataset ds;
  struct s3bd_error err = { 0 };

  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_int_equal (ds.nfiles, 0);
  assert_int_equal (ds.ndirs, 0);
  assert_int_equal (ds.nleft, 0);
  assert_int_equal (ds.nbuckets, 1);
  dataset_free (&ds);

  /* Only the root marker. */
  add (&l, "p/", 0);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_int_equal (ds.nfiles + ds.ndirs + ds.nleft, 0);
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_markers_with_data (void **state)
{
  static const struct left left[] = {
    { "p/", DS_MARKER_WITH_DATA }, /* even the root's */
    { "p/x/", DS_MARKER_WITH_DATA },
    { NULL, 0 },
  };
  static const char *const paths[] = { "x/y", NULL };
  static const char *const dirs[] = { "z", NULL };
  struct s3_listing l = { 0 };
  struct dataset ds;
  struct s3bd_error err = { 0 };

  add (&l, "p/", 7);
  add (&l, "p/x/", 3);
  add (&l, "p/x/y", 3);
  add (&l, "p/z/", 0);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, left);
  assert_int_equal (ds.left[0].bucket, 0);
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_not_under_prefix (void **state)
{
  static const char *const keys[] = { "p/a", "q/b", NULL };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "bkt", "p/", &l, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_msg (&err, "\"q/b\"");
  assert_msg (&err, "s3://bkt/p/");
  assert_null (ds.files);
  assert_null (ds.arena);
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_invalid_paths (void **state)
{
  char long_key[300], too_long_key[300], key_1024[1100], key_1025[1100];
  const char *keys[] = {
    "p//a", /* leading '/' */
    "p/a//b",
    "p/./a",
    "p/a/../b",
    "p/a/..",
    long_key,
    too_long_key,
    "p/\xff.jpg",
    "p/\xc0\xaf",     /* overlong '/' */
    "p/\xed\xa0\x80", /* surrogate */
    "p/lost+found/x",
    "p/lost+found/",
    "p/lost+found",
    "p/x//", /* marker of "x/" */
    "p//",   /* marker of "" */
    "p/good",
    "p/sub/lost+found",
    key_1024,
    key_1025,
    NULL,
  };
  const struct left left[] = {
    { "p//a", DS_EMPTY_SEGMENT },
    { "p/a//b", DS_EMPTY_SEGMENT },
    { "p/./a", DS_DOT_SEGMENT },
    { "p/a/../b", DS_DOT_SEGMENT },
    { "p/a/..", DS_DOT_SEGMENT },
    { too_long_key, DS_NAME_TOO_LONG },
    { "p/\xff.jpg", DS_BAD_UTF8 },
    { "p/\xc0\xaf", DS_BAD_UTF8 },
    { "p/\xed\xa0\x80", DS_BAD_UTF8 },
    { "p/lost+found/x", DS_RESERVED_NAME },
    { "p/lost+found/", DS_RESERVED_NAME },
    { "p/lost+found", DS_RESERVED_NAME },
    { "p/x//", DS_EMPTY_SEGMENT },
    { "p//", DS_EMPTY_SEGMENT },
    { key_1025, DS_KEY_TOO_LONG },
    { NULL, 0 },
  };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  memcpy (long_key, "p/", 2);
  memset (long_key + 2, 'n', 255);
  long_key[257] = '\0';
  memcpy (too_long_key, "p/d/", 4);
  memset (too_long_key + 4, 'n', 256);
  too_long_key[260] = '\0';
  /* S3's limit on a key, 1024 bytes, and one past it (a saved listing
   * can hold anything).
   */
  memcpy (key_1024, "p/k/", 4);
  for (int i = 4; i < 1024; i++)
    key_1024[i] = (i % 200 == 0) ? '/' : 'k';
  key_1024[1024] = '\0';
  memcpy (key_1025, key_1024, 1024);
  key_1025[1024] = 'x';
  key_1025[1025] = '\0';

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_int_equal (ds.nfiles, 4);
  assert_string_equal (ds.files[0].path, "good");
  assert_string_equal (ds.files[1].path, key_1024 + 2);
  assert_string_equal (ds.files[2].path, long_key + 2);
  assert_string_equal (ds.files[3].path, "sub/lost+found");
  assert_left (&ds, left);
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_collisions (void **state)
{
  /* As S3 lists them, byte order: '-' and '.' sort before '/'. */
  static const char *const keys[] = {
    "p/a",  "p/a-b",   "p/a.txt",   "p/a/b",
    "p/a0", "p/b",     "p/b/",               /* file and marker */
    "p/c",  "p/c/d/",                        /* a marker below */
    "p/e",  "p/e.txt", "p/e.txt/f",          /* the middle one */
    "p/f",  "p/f!",    "p/f.x",     "p/f/x", /* needs a search */
    "p/g",  "p/g-x/",  "p/g/h/",             /* markers, search */
    "p/h",  "p/h/i",   "p/h/i/j",            /* two levels */
    "p/k",  "p/k.d/",  "p/kk/",              /* no collision */
    NULL,
  };
  static const char *const paths[] = {
    "a-b", "a.txt", "a/b", "a0",    "e", "e.txt/f",
    "f!",  "f.x",   "f/x", "h/i/j", "k", NULL,
  };
  static const char *const dirs[] = {
    "b", "c/d", "g-x", "g/h", "k.d", "kk", NULL,
  };
  static const struct left left[] = {
    { "p/a", DS_FILE_DIR_COLLISION },
    { "p/b", DS_FILE_DIR_COLLISION },
    { "p/c", DS_FILE_DIR_COLLISION },
    { "p/e.txt", DS_FILE_DIR_COLLISION },
    { "p/f", DS_FILE_DIR_COLLISION },
    { "p/g", DS_FILE_DIR_COLLISION },
    { "p/h", DS_FILE_DIR_COLLISION },
    { "p/h/i", DS_FILE_DIR_COLLISION },
    { NULL, 0 },
  };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, left);
  dataset_free (&ds);
  s3_listing_free (&l);
}

/* The same objects in any order give the same files and dirs; left-outs
 * follow the input order.
 */
static void
test_listing_unsorted (void **state)
{
  static const char *const sorted[] = {
    "p/a", "p/a.txt", "p/a/b", "p/x/", "p/y", "p/z//", NULL,
  };
  static const char *const shuffled[] = {
    "p/z//", "p/y", "p/a/b", "p/x/", "p/a.txt", "p/a", NULL,
  };
  static const char *const paths[] = { "a.txt", "a/b", "y", NULL };
  static const char *const dirs[] = { "x", NULL };
  static const struct left left1[] = {
    { "p/a", DS_FILE_DIR_COLLISION },
    { "p/z//", DS_EMPTY_SEGMENT },
    { NULL, 0 },
  };
  static const struct left left2[] = {
    { "p/z//", DS_EMPTY_SEGMENT },
    { "p/a", DS_FILE_DIR_COLLISION },
    { NULL, 0 },
  };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, sorted);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, left1);
  dataset_free (&ds);
  s3_listing_free (&l);

  listing_of (&l, shuffled);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, left2);
  assert_string_equal (ds.files[2].etag, "\"etag-1\""); /* y */
  dataset_free (&ds);
  s3_listing_free (&l);
}

static void
test_listing_unicode_order (void **state)
{
  static const char *const keys[] = {
    "p/\xf0\x9f\x98\x80", /* 😀 F0 */
    "p/z",
    "p/\xc3\xa9", /* é C3 A9 */
    "p/Z",
    "p/\xe6\x97\xa5\xe6\x9c\xac", /* 日本 E6 */
    "p/a",
    "p/\xc3\xa4",  /* ä C3 A4 */
    "p/\xc3\xa4/", /* marker */
    "p/\xc3\xa4/x",
    NULL,
  };
  static const char *const paths[] = {
    "Z",
    "a",
    "z",
    "\xc3\xa4/x",
    "\xc3\xa9",
    "\xe6\x97\xa5\xe6\x9c\xac",
    "\xf0\x9f\x98\x80",
    NULL,
  };
  static const struct left left[] = {
    { "p/\xc3\xa4", DS_FILE_DIR_COLLISION },
    { NULL, 0 },
  };
  struct s3_listing l;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  listing_of (&l, keys);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_paths (&ds, paths);
  assert_left (&ds, left);
  dataset_free (&ds);
  s3_listing_free (&l);
}

/* A listing never has a key twice, but a caller's might: the first wins. */
static void
test_listing_duplicate_keys (void **state)
{
  static const struct left left[] = {
    { "p/a", DS_DUPLICATE_PATH },
    { "p/d/", DS_DUPLICATE_PATH },
    { NULL, 0 },
  };
  struct s3_listing l = { 0 };
  struct dataset ds;
  struct s3bd_error err = { 0 };

  add (&l, "p/a", 1);
  add (&l, "p/d/", 0);
  add (&l, "p/a", 2);
  add (&l, "p/d/", 0);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  assert_int_equal (ds.nfiles, 1);
  assert_int_equal (ds.files[0].size, 1);
  assert_int_equal (ds.ndirs, 1);
  assert_left (&ds, left);
  dataset_free (&ds);
  s3_listing_free (&l);
}

/* ---- Manifests ---- */

static void
test_manifest_good (void **state)
{
  static const char json[]
      = "[ {\"prefix\": \"s3://bkt/some/prefix/\", \"other\": 1},\n"
        "  \"relative/path/a.jpg\",\n"
        "  \"b.jpg\" ]\n";
  struct manifest m;
  struct s3bd_error err = { 0 };

  assert_int_equal (manifest_parse (json, strlen (json), &m, &err), 0);
  assert_int_equal (m.n, 2);
  assert_string_equal (m.v[0].bucket, "bkt");
  assert_string_equal (m.v[0].key, "some/prefix/relative/path/a.jpg");
  assert_string_equal (m.v[0].path, "relative/path/a.jpg");
  assert_string_equal (m.v[1].key, "some/prefix/b.jpg");
  assert_string_equal (m.v[1].path, "b.jpg");
  manifest_free (&m);
  assert_null (m.v);
  manifest_free (&m);

  /* A prefix without '/' is a plain concatenation, as SageMaker does. */
  static const char json2[] = "[{\"prefix\": \"s3://bkt/p\"}, \"x\"]";
  assert_int_equal (manifest_parse (json2, strlen (json2), &m, &err), 0);
  assert_string_equal (m.v[0].key, "px");
  assert_string_equal (m.v[0].path, "x");
  manifest_free (&m);

  /* The bucket alone. */
  static const char json3[] = "[{\"prefix\": \"s3://bkt\"}, \"x/y\"]";
  assert_int_equal (manifest_parse (json3, strlen (json3), &m, &err), 0);
  assert_string_equal (m.v[0].bucket, "bkt");
  assert_string_equal (m.v[0].key, "x/y");
  manifest_free (&m);

  /* Not NUL-terminated: only len bytes count. */
  static const char json4[] = "[{\"prefix\": \"s3://b/\"}, \"k\"]garbage";
  assert_int_equal (manifest_parse (json4, strlen (json4) - 7, &m, &err), 0);
  assert_int_equal (m.n, 1);
  manifest_free (&m);
}

struct bad_case
{
  const char *json;
  const char *part;
};

static const struct bad_case bad_manifests[] = {
  { "", "not JSON" },
  { "   \n", "not JSON" },
  { "[1,", "not JSON: unexpected end of data at line 1" },
  { "[\n {\"prefix\": \"s3://b/\"},\n \"a\" \"b\"]", "at line 3, column 6" },
  { "{}", "expected a JSON array, found an object" },
  { "42", "expected a JSON array, found a number" },
  { "\"s\"", "found a string" },
  { "[]", "empty array" },
  { "[\"a\"]", "element 0: expected {\"prefix\"" },
  { "[{}]", "element 0: expected {\"prefix\"" },
  { "[{\"prefix\": 3}, \"a\"]", "element 0" },
  { "[{\"prefix\": \"http://b/p/\"}, \"a\"]",
    "prefix: http://b/p/: not an S3 URI" },
  { "[{\"prefix\": \"s3:///p/\"}, \"a\"]", "no bucket name" },
  { "[{\"prefix\": \"s3://b/p/\"}]", "no entries" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"a\", 3]",
    "element 2: expected a string, found a number" },
  { "[{\"prefix\": \"s3://b/p/\"}, null]",
    "element 1: expected a string, found null" },
  { "[{\"prefix\": \"s3://b/p/\"}, [\"a\"]]", "found an array" },
  { "[{\"prefix\": \"s3://b/p/\"}, {\"a\": 1}]", "found an object" },
  { "[{\"prefix\": \"s3://b/p/\"}, true]", "found a boolean" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"a\\u0000b\"]",
    "element 1: contains a NUL" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"a\"] x", "not JSON" },
  /* JSON's null has no json-c object: found by tests/fuzz/fuzz-manifest.c,
   * it read past the text for a position it never had.
   */
  { "\t\n\t\n\t null\t\n\t\n\t",
    "manifest: expected a JSON array, found null" },
  { "null", "expected a JSON array, found null" },
  { "[null]", "element 0: expected" },
  /* Strict UTF-8, with where: a stray byte, an overlong '/', a surrogate,
   * past U+10FFFF, a sequence cut short.
   */
  { "[{\"prefix\": \"s3://b/p/\"},\n \"a\xff\"]",
    "manifest: invalid UTF-8 at line 2, column 4" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"\xc0\xaf\"]",
    "invalid UTF-8 at line 1, column 28" },
  { "[{\"prefix\": \"s3://b/\xed\xa0\x80/\"}, \"a\"]",
    "invalid UTF-8 at line 1, column 21" },
  { "[{\"prefix\": \"s3://b/p/\"},\n\n\"\xf4\x90\x80\x80\"]",
    "invalid UTF-8 at line 3, column 2" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"\xe2\x82\"]",
    "invalid UTF-8 at line 1, column 28" },
  { "[{\"prefix\": \"s3://b/p/\"}, \"a\",]", "not JSON" },
};

static void
test_manifest_errors (void **state)
{
  struct manifest m;
  struct s3bd_error err;
  size_t i;

  for (i = 0; i < sizeof bad_manifests / sizeof bad_manifests[0]; i++)
    {
      const char *j = bad_manifests[i].json;

      memset (&err, 0, sizeof err);
      if (manifest_parse (j, strlen (j), &m, &err) != -1)
        fail_msg ("case %zu %s: accepted", i, j);
      assert_int_equal (err.code, S3BD_EINVAL);
      assert_msg (&err, bad_manifests[i].part);
      assert_true (strncmp (err.msg, "manifest", 8) == 0);
      assert_null (m.v);
      assert_int_equal (m.n, 0);
    }
}

/* ---- Augmented manifests ---- */

static void
test_augmented_one_bucket (void **state)
{
  static const char text[]
      = "{\"source-ref\": \"s3://bkt/data/train/x/1.jpg\", \"label\": 3}\n"
        "\n"
        "   \r\n"
        "{\"label\": 4, \"source-ref\": \"s3://bkt/data/train/y/2.jpg\"}\r\n"
        "{\"source-ref\": \"s3://bkt/data/train/3.jpg\", "
        "\"label-metadata\": {\"class-name\": \"cat\"}}";
  struct manifest m;
  struct s3bd_error err = { 0 };

  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), NULL, 0, &m, &err), 0);
  assert_int_equal (m.n, 3);
  assert_string_equal (m.v[0].bucket, "bkt");
  assert_string_equal (m.v[0].key, "data/train/x/1.jpg");
  assert_string_equal (m.v[0].path, "x/1.jpg");
  assert_string_equal (m.v[1].path, "y/2.jpg");
  assert_string_equal (m.v[2].path, "3.jpg");
  assert_ptr_equal (m.v[0].bucket, m.v[2].bucket); /* interned */
  manifest_free (&m);

  /* '/'-bounded: "train1/" and "train2/" share "data/", not "data/train". */
  static const char t2[] = "{\"a-ref\": \"s3://b/data/train1/a\"}\n"
                           "{\"a-ref\": \"s3://b/data/train2/b\"}\n";
  assert_int_equal (
      augmented_manifest_parse (t2, strlen (t2), NULL, 0, &m, &err), 0);
  assert_string_equal (m.v[0].path, "train1/a");
  assert_string_equal (m.v[1].path, "train2/b");
  manifest_free (&m);

  /* One key: its name.  Keys at the top: unchanged. */
  static const char t3[] = "{\"a-ref\": \"s3://b/x/y/z.jpg\"}";
  assert_int_equal (
      augmented_manifest_parse (t3, strlen (t3), NULL, 0, &m, &err), 0);
  assert_string_equal (m.v[0].path, "z.jpg");
  manifest_free (&m);
  static const char t4[]
      = "{\"a-ref\": \"s3://b/top.jpg\"}\n{\"a-ref\": \"s3://b/d/e.jpg\"}\n";
  assert_int_equal (
      augmented_manifest_parse (t4, strlen (t4), NULL, 0, &m, &err), 0);
  assert_string_equal (m.v[0].path, "top.jpg");
  assert_string_equal (m.v[1].path, "d/e.jpg");
  manifest_free (&m);

  /* A marker keeps its own name: the prefix comes from directory parts. */
  static const char t5[]
      = "{\"a-ref\": \"s3://b/d/x/\"}\n{\"a-ref\": \"s3://b/d/x/f\"}\n";
  assert_int_equal (
      augmented_manifest_parse (t5, strlen (t5), NULL, 0, &m, &err), 0);
  assert_string_equal (m.v[0].path, "x/");
  assert_string_equal (m.v[1].path, "x/f");
  manifest_free (&m);
}

static void
test_augmented_several_buckets (void **state)
{
  static const char text[]
      = "{\"source-ref\": \"s3://one/imgs/a/1.jpg\"}\n"
        "{\"source-ref\": \"s3://two/other/place/2.jpg\"}\n"
        "{\"source-ref\": \"s3://one/imgs/b/3.jpg\"}\n";
  struct manifest m;
  struct s3bd_error err = { 0 };

  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), NULL, 0, &m, &err), 0);
  assert_int_equal (m.n, 3);
  assert_string_equal (m.v[0].path, "one/a/1.jpg");
  assert_string_equal (m.v[1].path, "two/2.jpg");
  assert_string_equal (m.v[2].path, "one/b/3.jpg");
  assert_string_equal (m.v[1].bucket, "two");
  assert_string_equal (m.v[1].key, "other/place/2.jpg");
  assert_ptr_equal (m.v[0].bucket, m.v[2].bucket);
  manifest_free (&m);
}

static void
test_augmented_attrs (void **state)
{
  static const char text[]
      = "{\"label-ref\": \"s3://b/l/1.png\", \"ref\": \"s3://b/no\", "
        "\"source-reference\": \"s3://b/no\", \"source-ref\": "
        "\"s3://b/s/1.jpg\", "
        "\"mask\": \"s3://b/m/1.png\"}\n";
  static const char *const attrs[] = { "mask", "source-ref" };
  struct manifest m;
  struct s3bd_error err = { 0 };

  /* Default: every "-ref" attribute, in the line's order. */
  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), NULL, 0, &m, &err), 0);
  assert_int_equal (m.n, 2);
  assert_string_equal (m.v[0].key, "l/1.png");
  assert_string_equal (m.v[1].key, "s/1.jpg");
  assert_string_equal (m.v[0].path, "l/1.png");
  manifest_free (&m);

  /* Default: the records are those two objects, one line. */
  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), NULL, 0, &m, &err), 0);
  assert_int_equal (m.nrec, 2);
  assert_true (m.rec[0].first && !m.rec[1].first);
  assert_int_equal (m.rec[0].entry, 0);
  assert_int_equal (m.rec[1].entry, 1);
  manifest_free (&m);

  /* Named: those, in attrs order; "mask" does not end in "-ref", so it
   * is an inline value (its JSON text), not a file.
   */
  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), attrs, 2, &m, &err), 0);
  assert_int_equal (m.n, 1);
  assert_string_equal (m.v[0].key, "s/1.jpg");
  assert_int_equal (m.nrec, 2);
  assert_true (m.rec[0].first && !m.rec[1].first);
  assert_int_equal (m.rec[0].entry, SIZE_MAX);
  assert_int_equal (m.rec[0].len, strlen ("\"s3://b/m/1.png\""));
  assert_memory_equal (m.rec[0].text, "\"s3://b/m/1.png\"", m.rec[0].len);
  assert_int_equal (m.rec[1].entry, 0);
  manifest_free (&m);
}

/* Inline values: their JSON text as json-c writes it plainly; a line of
 * inline values only still needs a file somewhere; a value over the
 * inline limit is refused.
 */
static void
test_augmented_inline (void **state)
{
  static const char text[]
      = "{\"source-ref\": \"s3://b/k1\", \"class\": {\"a\": [1, 2.50, "
        "\"x/y\"], \"b\": null}}\n"
        "{\"class\": 7, \"source-ref\": \"s3://b/k2\"}\n";
  static const char *const attrs[] = { "class", "source-ref" };
  static const char *const only[] = { "class" };
  struct manifest m;
  struct s3bd_error err = { 0 };
  char *big;
  size_t n;

  (void)state;
  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), attrs, 2, &m, &err), 0);
  assert_int_equal (m.n, 2);
  assert_int_equal (m.nrec, 4);
  assert_true (m.rec[0].first && !m.rec[1].first);
  assert_true (m.rec[2].first && !m.rec[3].first);
  assert_int_equal (m.rec[0].len,
                    strlen ("{\"a\":[1,2.50,\"x/y\"],\"b\":null}"));
  assert_memory_equal (m.rec[0].text, "{\"a\":[1,2.50,\"x/y\"],\"b\":null}",
                       m.rec[0].len);
  assert_int_equal (m.rec[1].entry, 0);
  assert_memory_equal (m.rec[2].text, "7", 1);
  assert_int_equal (m.rec[3].entry, 1);
  manifest_free (&m);

  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), only, 1, &m, &err), -1);
  assert_msg (&err, "no \"-ref\" attribute, so no files");

  n = INDEX_MAX_INLINE + 64;
  big = malloc (n);
  assert_non_null (big);
  strcpy (big, "{\"a-ref\": \"s3://b/k\", \"v\": \"");
  memset (big + strlen (big), 'x', INDEX_MAX_INLINE);
  strcpy (big + 28 + INDEX_MAX_INLINE, "\"}");
  {
    static const char *const av[] = { "a-ref", "v" };

    assert_int_equal (
        augmented_manifest_parse (big, strlen (big), av, 2, &m, &err), -1);
    assert_msg (&err, "line 1: attribute \"v\": a value of 1048578 bytes");
  }
  free (big);
}

static const struct bad_case bad_augmented[] = {
  { "", "augmented manifest: no entries" },
  { "\n  \n\r\n", "no entries" },
  { "{\"a-ref\": \"s3://b/k\"}\n{\"a-ref\": \n", "line 2: not JSON" },
  { "{\"a-ref\": \"s3://b/k\"}\n\n[\"s3://b/k\"]\n",
    "line 3: expected a JSON object, found an array" },
  { "{\"a-ref\": \"s3://b/k\"} x\n", "line 1: not JSON" },
  { "{\"a-ref\": \"s3://b/k\"}{\"b-ref\": \"s3://b/j\"}\n",
    "line 1: not JSON" },
  { "{\"a-ref\": \"s3://b/k\"}\n{\"label\": 1}\n",
    "line 2: no attribute whose name ends in \"-ref\"" },
  { "{\"a-ref\": \"http://b/k\"}",
    "line 1: attribute \"a-ref\": http://b/k: not an S3 URI" },
  { "{\"a-ref\": 12}", "line 1: attribute \"a-ref\": expected an s3:// URI "
                       "string, found a number" },
  { "{\"a-ref\": \"s3://b/\"}",
    "line 1: attribute \"a-ref\": s3://b/: names a bucket" },
  { "{\"a-ref\": \"s3://b\"}", "names a bucket" },
  { "{\"a-ref\": \"s3:///k\"}", "no bucket name" },
  { "{\"a-ref\": \"s3://b/a\\u0000b\"}", "contains a NUL" },
  /* null (found by the fuzzer, as for manifests) */
  { "null", "line 1: expected a JSON object, found null" },
  { "{\"a-ref\": \"s3://b/k\"}\n\t null\t\n",
    "line 2: expected a JSON object, found null" },
  { "{\"a-ref\": \"s3://b/k\"}\n{\"a-ref\": \"s3://b/\xc3\"}",
    "line 2: invalid UTF-8 at column 19" },
  { "\n{\"a-\xed\xbf\xbfref\": \"s3://b/k\"}",
    "line 2: invalid UTF-8 at column 5" },
};

static void
test_augmented_errors (void **state)
{
  struct manifest m;
  struct s3bd_error err;
  size_t i;

  for (i = 0; i < sizeof bad_augmented / sizeof bad_augmented[0]; i++)
    {
      const char *t = bad_augmented[i].json;

      memset (&err, 0, sizeof err);
      if (augmented_manifest_parse (t, strlen (t), NULL, 0, &m, &err) != -1)
        fail_msg ("case %zu %s: accepted", i, t);
      assert_int_equal (err.code, S3BD_EINVAL);
      assert_msg (&err, bad_augmented[i].part);
      assert_true (strncmp (err.msg, "augmented manifest", 18) == 0);
      assert_null (m.v);
      assert_null (m.arena);
    }
}

static void
test_augmented_missing_attr (void **state)
{
  static const char text[]
      = "{\"source-ref\": \"s3://b/k1\", \"mask\": \"s3://b/m1\"}\n"
        "{\"source-ref\": \"s3://b/k2\"}\n";
  static const char *const attrs[] = { "source-ref", "mask" };
  struct manifest m;
  struct s3bd_error err = { 0 };

  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), attrs, 2, &m, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_msg (&err, "line 2: no attribute \"mask\"");
  /* A named "-ref" attribute that is no URI. */
  static const char t2[] = "{\"source-ref\": [1], \"mask\": 1}";
  assert_int_equal (
      augmented_manifest_parse (t2, strlen (t2), attrs, 2, &m, &err), -1);
  assert_msg (&err, "line 1: attribute \"source-ref\": expected an s3:// URI "
                    "string, found an array");
}

/* ---- Datasets from manifests ---- */

/* found[] for m: every entry found, size i + 1, etag "e<i>". */
static struct s3_object *
found_all (const struct manifest *m, char etags[][24])
{
  struct s3_object *found = calloc (m->n, sizeof *found);
  size_t i;

  assert_non_null (found);
  for (i = 0; i < m->n; i++)
    {
      snprintf (etags[i], 24, "\"e%zu\"", i);
      found[i].key = m->v[i].key;
      found[i].etag = etags[i];
      found[i].size = i + 1;
      found[i].mtime = 1600000000 + (int64_t)i;
    }
  return found;
}

static void
test_from_manifest (void **state)
{
  static const char json[]
      = "[{\"prefix\": \"s3://bkt/p/\"}, \"b.jpg\", \"a/1.jpg\", \"x\", "
        "\"x/y\", \"a/../c\", \"d/\", \"b.jpg\", \"lost+found/z\"]";
  static const char *const paths[] = { "a/1.jpg", "b.jpg", "x/y", NULL };
  static const char *const dirs[] = { "d", NULL };
  static const struct left left[] = {
    { "p/x", DS_FILE_DIR_COLLISION },
    { "p/a/../c", DS_DOT_SEGMENT },
    { "p/b.jpg", DS_DUPLICATE_PATH },
    { "p/lost+found/z", DS_RESERVED_NAME },
    { NULL, 0 },
  };
  char etags[8][24];
  struct manifest m;
  struct s3_object *found;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  assert_int_equal (manifest_parse (json, strlen (json), &m, &err), 0);
  assert_int_equal (m.n, 8);
  found = found_all (&m, etags);
  found[5].size = 0; /* "d/": a marker */
  assert_int_equal (dataset_from_manifest (&ds, &m, found, &err), 0);
  manifest_free (&m); /* the dataset has copies */
  free (found);
  assert_paths (&ds, paths);
  assert_dirs (&ds, dirs);
  assert_left (&ds, left);
  assert_int_equal (ds.nbuckets, 1);
  assert_string_equal (ds.buckets[0], "bkt");
  assert_string_equal (ds.prefix, "");
  /* b.jpg is the first one (entry 0), not the duplicate (entry 6). */
  assert_string_equal (ds.files[1].key, "p/b.jpg");
  assert_int_equal (ds.files[1].size, 1);
  assert_string_equal (ds.files[1].etag, "\"e0\"");
  assert_int_equal (ds.files[1].mtime, 1600000000);
  dataset_free (&ds);
}

static void
test_from_manifest_marker_with_data (void **state)
{
  static const char json[] = "[{\"prefix\": \"s3://bkt/\"}, \"d/\", \"f\"]";
  static const struct left left[] = {
    { "d/", DS_MARKER_WITH_DATA },
    { NULL, 0 },
  };
  char etags[2][24];
  struct manifest m;
  struct s3_object *found;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  assert_int_equal (manifest_parse (json, strlen (json), &m, &err), 0);
  found = found_all (&m, etags);
  assert_int_equal (dataset_from_manifest (&ds, &m, found, &err), 0);
  assert_int_equal (ds.nfiles, 1);
  assert_int_equal (ds.ndirs, 0);
  assert_left (&ds, left);
  dataset_free (&ds);
  manifest_free (&m);
  free (found);
}

static void
test_from_augmented_buckets (void **state)
{
  static const char text[] = "{\"source-ref\": \"s3://two/d/b.jpg\"}\n"
                             "{\"source-ref\": \"s3://one/e/a.jpg\"}\n"
                             "{\"source-ref\": \"s3://two/d/a.jpg\"}\n"
                             "{\"source-ref\": \"s3://two/d/b.jpg\"}\n";
  static const char *const paths[] = {
    "one/a.jpg",
    "two/a.jpg",
    "two/b.jpg",
    NULL,
  };
  static const struct left left[] = {
    { "d/b.jpg", DS_DUPLICATE_PATH },
    { NULL, 0 },
  };
  char etags[4][24];
  struct manifest m;
  struct s3_object *found;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  assert_int_equal (
      augmented_manifest_parse (text, strlen (text), NULL, 0, &m, &err), 0);
  assert_int_equal (m.n, 4); /* the duplicate is kept here */
  found = found_all (&m, etags);
  assert_int_equal (dataset_from_manifest (&ds, &m, found, &err), 0);
  assert_int_equal (ds.nbuckets, 2);
  assert_string_equal (ds.buckets[0], "two"); /* first appearance */
  assert_string_equal (ds.buckets[1], "one");
  assert_paths (&ds, paths);
  assert_int_equal (ds.files[0].bucket, 1);
  assert_int_equal (ds.files[1].bucket, 0);
  assert_string_equal (ds.files[1].key, "d/a.jpg");
  assert_left (&ds, left);
  assert_int_equal (ds.left[0].bucket, 0);
  dataset_free (&ds);
  manifest_free (&m);
  free (found);
}

static void
test_from_manifest_missing (void **state)
{
  static const char json[]
      = "[{\"prefix\": \"s3://bkt/p/\"}, \"a.jpg\", \"b.jpg\", \"c.jpg\"]";
  char etags[3][24];
  struct manifest m;
  struct s3_object *found;
  struct dataset ds;
  struct s3bd_error err = { 0 };

  assert_int_equal (manifest_parse (json, strlen (json), &m, &err), 0);
  found = found_all (&m, etags);
  found[1].key = NULL;
  assert_int_equal (dataset_from_manifest (&ds, &m, found, &err), -1);
  assert_int_equal (err.code, S3BD_ENOKEY);
  assert_string_equal (err.msg,
                       "manifest entry 2: s3://bkt/p/b.jpg: no such key");
  assert_null (ds.files);
  dataset_free (&ds);
  manifest_free (&m);
  free (found);
}

/* A 2,000-byte key: the message gives way in the key's middle and keeps
 * its reason.
 */
static void
test_from_manifest_long_key_keeps_reason (void **state)
{
  char *json = malloc (4096), etags[1][24];
  struct manifest m;
  struct s3_object *found;
  struct dataset ds;
  struct s3bd_error err = { 0 };
  size_t n;

  assert_non_null (json);
  n = (size_t)snprintf (json, 4096, "[{\"prefix\": \"s3://bkt/p/\"}, \"%s",
                        "start-");
  memset (json + n, 'k', 2000);
  n += 2000;
  n += (size_t)snprintf (json + n, 4096 - n, "-end\"]");
  assert_int_equal (manifest_parse (json, n, &m, &err), 0);
  found = found_all (&m, etags);
  found[0].key = NULL;
  assert_int_equal (dataset_from_manifest (&ds, &m, found, &err), -1);
  assert_int_equal (err.code, S3BD_ENOKEY);
  assert_true (strncmp (err.msg, "manifest entry 1: s3://bkt/p/start-kkk", 38)
               == 0);
  assert_msg (&err, " bytes...]");
  assert_string_equal (err.msg + strlen (err.msg) - 18, "k-end: no such key");
  manifest_free (&m);
  free (found);
  free (json);
}

/* ---- Sharding ---- */

static void
test_shard (void **state)
{
  struct s3_listing l = { 0 };
  struct dataset all, ds;
  struct s3bd_error err = { 0 };
  char key[32];
  unsigned i, s, *seen;
  size_t j, k, total = 0;

  for (i = 0; i < 20; i++)
    {
      snprintf (key, sizeof key, "p/f%02u", 19 - i);
      add (&l, key, 1);
    }
  add (&l, "p/d/", 0);
  assert_int_equal (dataset_from_listing (&all, "b", "p/", &l, &err), 0);
  seen = calloc (all.nfiles, sizeof *seen);
  assert_non_null (seen);
  for (s = 0; s < 3; s++)
    {
      assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
      dataset_shard (&ds, s, 3);
      assert_int_equal (ds.nfiles, s < 2 ? 7 : 6);
      assert_int_equal (ds.ndirs, 1); /* directories in every shard */
      assert_int_equal (ds.nleft, 0);
      for (j = 0; j < ds.nfiles; j++)
        {
          /* File j of shard s is file s + 3j of the whole. */
          k = s + 3 * j;
          assert_string_equal (ds.files[j].path, all.files[k].path);
          seen[k]++;
        }
      total += ds.nfiles;
      dataset_free (&ds);
    }
  assert_int_equal (total, all.nfiles);
  for (j = 0; j < all.nfiles; j++)
    assert_int_equal (seen[j], 1);

  /* One shard: everything.  More shards than files: some are empty. */
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  dataset_shard (&ds, 0, 1);
  assert_int_equal (ds.nfiles, 20);
  dataset_shard (&ds, 19, 25);
  assert_int_equal (ds.nfiles, 1);
  assert_string_equal (ds.files[0].path, "f19");
  dataset_free (&ds);
  assert_int_equal (dataset_from_listing (&ds, "b", "p/", &l, &err), 0);
  dataset_shard (&ds, 24, 25);
  assert_int_equal (ds.nfiles, 0);
  dataset_free (&ds);

  free (seen);
  dataset_free (&all);
  s3_listing_free (&l);
}

/* ---- Scale ---- */

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A million objects: 1000 directories of 1000 files, a marker each, and
 * in every directory a file that is also a directory.  Once as S3 lists
 * them, once in another order.
 */
static void
test_million (void **state)
{
  struct s3_listing l = { 0 };
  struct dataset ds;
  struct s3bd_error err = { 0 };
  char key[64];
  unsigned d, f, pass;
  double t0, t1;
  size_t n;

  for (pass = 0; pass < 2; pass++)
    {
      memset (&l, 0, sizeof l);
      for (d = 0; d < 1000; d++)
        {
          /* pass 1: the directories from the last to the first */
          unsigned dd = pass ? 999 - d : d;

          snprintf (key, sizeof key, "train/c%04u/", dd);
          add (&l, key, 0);
          for (f = 0; f < 998; f++)
            {
              snprintf (key, sizeof key, "train/c%04u/img%06u.jpg", dd, f);
              add (&l, key, 1000 + f);
            }
          snprintf (key, sizeof key, "train/c%04u/x", dd);
          add (&l, key, 1);
          snprintf (key, sizeof key, "train/c%04u/x/y", dd);
          add (&l, key, 1);
        }
      if (pass == 0)
        s3_listing_sort (&l);
      n = l.n;
      t0 = now ();
      assert_int_equal (dataset_from_listing (&ds, "b", "train/", &l, &err), 0);
      t1 = now ();
      print_message ("%zu objects (%s): dataset in %.3f s\n", n,
                     pass ? "unsorted" : "sorted", t1 - t0);
      assert_int_equal (ds.nfiles, 999000);
      assert_int_equal (ds.ndirs, 1000);
      assert_int_equal (ds.nleft, 1000);
      assert_int_equal (ds.left[0].reason, DS_FILE_DIR_COLLISION);
      assert_string_equal (ds.files[0].path, "c0000/img000000.jpg");
      assert_string_equal (ds.files[998].path, "c0000/x/y");
      assert_string_equal (ds.files[ds.nfiles - 1].path, "c0999/x/y");
      for (n = 1; n < ds.nfiles; n++)
        assert_true (strcmp (ds.files[n - 1].path, ds.files[n].path) < 0);
      dataset_free (&ds);
      s3_listing_free (&l);
    }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_reason_text),
    cmocka_unit_test (test_check_path),
    cmocka_unit_test (test_check_path_name_length),
    cmocka_unit_test (test_listing_basic),
    cmocka_unit_test (test_listing_prefix_without_slash),
    cmocka_unit_test (test_listing_empty_prefix),
    cmocka_unit_test (test_listing_empty),
    cmocka_unit_test (test_listing_markers_with_data),
    cmocka_unit_test (test_listing_not_under_prefix),
    cmocka_unit_test (test_listing_invalid_paths),
    cmocka_unit_test (test_listing_collisions),
    cmocka_unit_test (test_listing_unsorted),
    cmocka_unit_test (test_listing_unicode_order),
    cmocka_unit_test (test_listing_duplicate_keys),
    cmocka_unit_test (test_manifest_good),
    cmocka_unit_test (test_manifest_errors),
    cmocka_unit_test (test_augmented_one_bucket),
    cmocka_unit_test (test_augmented_several_buckets),
    cmocka_unit_test (test_augmented_attrs),
    cmocka_unit_test (test_augmented_inline),
    cmocka_unit_test (test_augmented_errors),
    cmocka_unit_test (test_augmented_missing_attr),
    cmocka_unit_test (test_from_manifest),
    cmocka_unit_test (test_from_manifest_marker_with_data),
    cmocka_unit_test (test_from_augmented_buckets),
    cmocka_unit_test (test_from_manifest_missing),
    cmocka_unit_test (test_from_manifest_long_key_keeps_reason),
    cmocka_unit_test (test_shard),
    cmocka_unit_test (test_million),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
