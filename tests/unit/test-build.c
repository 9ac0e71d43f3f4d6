/* Unit tests of lib/build.c, from saved listings (no S3): the result is
 * an index that decodes to the dataset; the same input gives the same
 * bytes, and unsharded is unsharded however it is said; each option
 * reaches the image (read back from its superblock and inodes with
 * libext2fs); option and source errors name their subject and leave the
 * result zeroed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "s3bd/build.h"
#include "s3bd/ext4.h"
#include "s3bd/index.h"

/* A saved listing in a temporary file: "SIZE\tETAG\tMTIME\tKEY" lines. */
static char listing_path[64];

static int
setup (void **state)
{
  static const char text[] = "0\t\"e0\"\t1700000000\tds/a/empty\n"
                             "1\t\"e1\"\t1700000001\tds/a/one\n"
                             "4097\t\"e2\"\t1700000002\tds/a/b4097\n"
                             "5\t\"e3\"\t1700000003\tds/bad//segment\n"
                             "0\t\"e4\"\t1700000004\tds/markers/dir/\n"
                             "300000\t\"e5\"\t1700000005\tds/big.bin\n"
                             "7\t\"e6\"\t1700000006\tother/outside\n";
  int fd;

  snprintf (listing_path, sizeof listing_path, "/tmp/test-build.XXXXXX");
  fd = mkstemp (listing_path);
  if (fd == -1
      || write (fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
    return -1;
  close (fd);
  return 0;
}

static int
teardown (void **state)
{
  unlink (listing_path);
  return 0;
}

static void
opts_of (struct build_opts *o, const char *uri)
{
  build_opts_init (o);
  o->prefix_uri = uri;
  o->listing = listing_path;
}

static void
test_defaults (void **state)
{
  struct build_opts o;
  struct build_result r;
  struct s3bd_error err = { 0 };
  struct s3bd_index idx;

  build_opts_init (&o);
  assert_int_equal (o.file_mode, 0444);
  assert_int_equal (o.dir_mode, 0555);
  assert_int_equal (o.shard_count, 1);
  assert_int_equal (o.parallel, 16);
  assert_true (o.time == -1);

  opts_of (&o, "s3://bkt/ds/");
  assert_int_equal (build_index (NULL, &o, &r, &err), 0);
  assert_int_equal (r.ds.nfiles, 4); /* not "other/outside" */
  assert_int_equal (r.ds.nleft, 1);  /* bad//segment */
  assert_int_equal (r.bytes, 0 + 1 + 4097 + 300000);
  assert_int_equal (index_decode (r.index, r.index_len, &idx, &err), 0);
  assert_int_equal (idx.nobjects, 4);
  assert_int_equal (idx.nleft, 1);
  assert_int_equal (idx.device_blocks, r.device_blocks);
  assert_string_equal (idx.buckets[0], "bkt");
  assert_string_equal (idx.prefix, "ds/");
  assert_int_equal (idx.source_kind, INDEX_SOURCE_PREFIX);
  assert_int_equal (idx.shard_count, 1);
  assert_true (idx.created == 1700000005); /* the newest object */
  index_free (&idx);
  build_result_free (&r);
  build_result_free (&r); /* twice is safe */
  assert_null (r.index);
}

static void
test_deterministic (void **state)
{
  struct build_opts o;
  struct build_result a, b, c;
  struct s3bd_error err = { 0 };

  opts_of (&o, "s3://bkt/ds/");
  assert_int_equal (build_index (NULL, &o, &a, &err), 0);
  assert_int_equal (build_index (NULL, &o, &b, &err), 0);
  assert_int_equal (a.index_len, b.index_len);
  assert_memory_equal (a.index, b.index, a.index_len);
  /* 0/0 and 0/1 are both "every object": the same UUID. */
  o.shard_count = 0;
  assert_int_equal (build_index (NULL, &o, &c, &err), 0);
  assert_int_equal (a.index_len, c.index_len);
  assert_memory_equal (a.index, c.index, a.index_len);
  build_result_free (&c);
  /* The URI as written is part of the identity. */
  opts_of (&o, "s3://bkt/ds");
  assert_int_equal (build_index (NULL, &o, &c, &err), 0);
  assert_true (a.index_len != c.index_len
               || memcmp (a.index, c.index, a.index_len) != 0);
  build_result_free (&a);
  build_result_free (&b);
  build_result_free (&c);
}

/* The superblock: block 0 holds it at byte 1024. */
static const unsigned char *
superblock (const struct s3bd_index *idx)
{
  struct index_lookup l;

  assert_int_equal (index_lookup (idx, 0, &l), 0);
  assert_int_equal (l.kind, INDEX_META);
  return l.meta + 1024;
}

/* The image's metadata, as libext2fs reads it: every run of the index
 * put in a memstore, the data blocks left unmapped (zeros).
 */
static ext2_filsys
open_image (const struct s3bd_index *idx, struct memstore **store)
{
  ext2_filsys fs = NULL;
  errcode_t e;

  *store = memstore_new ();
  assert_non_null (*store);
  for (uint64_t r = 0; r < idx->nruns; r++)
    for (uint32_t i = 0; i < idx->runs[r].count; i++)
      {
        const struct index_meta_run *run = &idx->runs[r];
        uint64_t c = run->repeated ? run->first : run->first + i;

        assert_int_equal (memstore_put (*store, run->block + i,
                                        idx->content + c * idx->block_size),
                          0);
      }
  e = ext2fs_open (memstore_name (*store), EXT2_FLAG_64BITS, 0, 0,
                   memstore_io_manager (), &fs);
  if (e)
    fail_msg ("ext2fs_open: %s", error_message (e));
  return fs;
}

/* The inode at path, checked for its type, permission bits and owner. */
static void
check_inode (ext2_filsys fs, const char *path, uint16_t type, uint16_t perm,
             uint32_t uid, uint32_t gid, int64_t mtime)
{
  struct ext2_inode_large ino;
  ext2_ino_t n = EXT2_ROOT_INO;

  if (*path && ext2fs_namei (fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &n))
    fail_msg ("%s: not in the image", path);
  assert_int_equal (
      ext2fs_read_inode_full (fs, n, (struct ext2_inode *)&ino, sizeof ino), 0);
  if (ino.i_mode != (type | perm) || inode_uid (ino) != uid
      || inode_gid (ino) != gid || (int32_t)ino.i_mtime != mtime)
    fail_msg ("/%s: mode %o uid %u gid %u mtime %d, expected %o %u %u %" PRId64,
              path, ino.i_mode, inode_uid (ino), inode_gid (ino),
              (int32_t)ino.i_mtime, type | perm, uid, gid, mtime);
}

static void
test_options (void **state)
{
  struct build_opts o;
  struct build_result r;
  struct s3bd_error err = { 0 };
  struct s3bd_index idx;
  struct memstore *store;
  const unsigned char *sb;
  ext2_filsys fs;

  opts_of (&o, "s3://bkt/ds/");
  o.label = "sixteen-bytes-ok";
  o.time = 1234567890;
  o.shard_index = 1;
  o.shard_count = 2;
  /* Past 16 bits: the high halves must reach the inode too. */
  o.uid = 70001;
  o.gid = 4294967294u;
  o.file_mode = 0640;
  o.dir_mode = 07751;
  assert_int_equal (build_index (NULL, &o, &r, &err), 0);
  /* Sorted: a/b4097, a/empty, a/one, big.bin; shard 1/2 keeps 1 and 3. */
  assert_int_equal (r.ds.nfiles, 2);
  assert_string_equal (r.ds.files[0].path, "a/empty");
  assert_string_equal (r.ds.files[1].path, "big.bin");
  assert_int_equal (index_decode (r.index, r.index_len, &idx, &err), 0);
  assert_int_equal (idx.shard_index, 1);
  assert_int_equal (idx.shard_count, 2);
  assert_true (idx.created == 1234567890);
  sb = superblock (&idx);
  assert_memory_equal (sb + 0x78, "sixteen-bytes-ok", 16); /* s_volume_name */

  /* Read back through libext2fs: the label, and each inode's owner and
   * mode (directories get o.time, files their object's mtime).
   */
  fs = open_image (&idx, &store);
  assert_memory_equal (fs->super->s_volume_name, "sixteen-bytes-ok", 16);
  assert_int_equal (fs->super->s_mkfs_time, 1234567890);
  check_inode (fs, "", LINUX_S_IFDIR, 07751, 70001, 4294967294u, 1234567890);
  check_inode (fs, "a", LINUX_S_IFDIR, 07751, 70001, 4294967294u, 1234567890);
  check_inode (fs, "a/empty", LINUX_S_IFREG, 0640, 70001, 4294967294u,
               1700000000);
  check_inode (fs, "big.bin", LINUX_S_IFREG, 0640, 70001, 4294967294u,
               1700000005);
  /* lost+found stays root's, 0700, whatever the options say. */
  check_inode (fs, "lost+found", LINUX_S_IFDIR, 0700, 0, 0, 1234567890);
  ext2fs_close_free (&fs);
  memstore_free (store);
  index_free (&idx);
  build_result_free (&r);

  /* The defaults, read back the same way: root's, 0444 and 0555. */
  opts_of (&o, "s3://bkt/ds/");
  o.time = 1234567890;
  assert_int_equal (build_index (NULL, &o, &r, &err), 0);
  assert_int_equal (index_decode (r.index, r.index_len, &idx, &err), 0);
  fs = open_image (&idx, &store);
  check_inode (fs, "", LINUX_S_IFDIR, 0555, 0, 0, 1234567890);
  check_inode (fs, "a/one", LINUX_S_IFREG, 0444, 0, 0, 1700000001);
  for (size_t i = 0; i < 16; i++)
    assert_int_equal (fs->super->s_volume_name[i], 0);
  ext2fs_close_free (&fs);
  memstore_free (store);
  index_free (&idx);
  build_result_free (&r);
}

static void
test_manifest_needs_s3 (void **state)
{
  struct build_opts o;
  struct build_result r;
  struct s3bd_error err = { 0 };

  /* Looking a manifest's objects up lists S3, even with a saved listing. */
  build_opts_init (&o);
  o.manifest = "m.json";
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_string_equal (err.msg, "listing m.json needs an S3 client");
  o.listing = listing_path;
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "give the prefix too"));
}

/* A saved listing can hold a key over S3's 1024 bytes: it is left out
 * with its reason, whole in the dataset (and --report), its first 1024
 * bytes in the index, cut at a character; the build goes on.  An ETag
 * over 1024 bytes is refused naming its line.
 */
static void
test_listing_key_too_long (void **state)
{
  char path[64], key[1200], *text;
  struct build_opts o;
  struct build_result r;
  struct s3bd_error err = { 0 };
  struct s3bd_index idx;
  FILE *f;
  int fd;
  size_t n;

  memcpy (key, "ds/", 3);
  n = 3;
  while (n < 1100)
    {
      memcpy (key + n, "\xe2\x82\xac", 3); /* U+20AC; 1024 = 3 + 3 * 340 + 1 */
      n += 3;
    }
  key[n] = '\0';
  snprintf (path, sizeof path, "/tmp/test-build-long.XXXXXX");
  fd = mkstemp (path);
  assert_true (fd >= 0);
  f = fdopen (fd, "w");
  assert_non_null (f);
  fprintf (f, "1\t\"e\"\t1700000000\tds/short\n");
  fprintf (f, "2\t\"e\"\t1700000000\t%s\n", key);
  fclose (f);

  build_opts_init (&o);
  o.prefix_uri = "s3://bkt/ds/";
  o.listing = path;
  assert_int_equal (build_index (NULL, &o, &r, &err), 0);
  assert_int_equal (r.ds.nfiles, 1);
  assert_int_equal (r.ds.nleft, 1);
  assert_string_equal (r.ds.left[0].key, key);
  assert_int_equal (r.ds.left[0].reason, DS_KEY_TOO_LONG);
  assert_int_equal (index_decode (r.index, r.index_len, &idx, &err), 0);
  assert_int_equal (idx.nleft, 1);
  assert_int_equal (idx.left[0].reason, DS_KEY_TOO_LONG);
  /* 3 + 3 * 340 = 1023 bytes: the 1024th would split a character. */
  assert_int_equal (strlen (idx.left[0].key), 1023);
  assert_memory_equal (idx.left[0].key, key, 1023);
  index_free (&idx);
  build_result_free (&r);

  /* An ETag over 1024 bytes: refused, naming the line. */
  text = malloc (1200);
  assert_non_null (text);
  memset (text, 'e', 1025);
  text[1025] = '\0';
  f = fopen (path, "w");
  assert_non_null (f);
  fprintf (f, "1\t\"e\"\t1700000000\tds/short\n\n3\t%s\t1\tds/x\n", text);
  fclose (f);
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  assert_non_null (strstr (err.msg, " line 3: ETag over 1024 bytes"));
  free (text);
  unlink (path);
}

static void
test_errors (void **state)
{
  struct build_opts o;
  struct build_result r;
  struct s3bd_error err = { 0 };

  build_opts_init (&o);
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "exactly one source"));

  opts_of (&o, "s3://bkt/ds/");
  o.manifest = "m.json";
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "exactly one source"));

  opts_of (&o, "s3://bkt/ds/");
  o.listing = NULL;
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "s3://bkt/ds/ needs an S3 client"));

  opts_of (&o, "s3://bkt/ds/");
  o.label = "seventeen-bytes-x";
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "at most 16 bytes"));

  opts_of (&o, "s3://bkt/ds/");
  o.shard_index = 2;
  o.shard_count = 2;
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "shard 2/2"));

  opts_of (&o, "s3://bkt/ds/");
  o.file_mode = 010000;
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_int_equal (err.code, S3BD_EINVAL);

  opts_of (&o, "s3://bkt/nothing/");
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_string_equal (err.msg, "s3://bkt/nothing/: no objects to serve");
  assert_null (r.index);
  assert_int_equal (r.ds.nfiles, 0);

  opts_of (&o, "s3://bkt/ds/bad/");
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_string_equal (err.msg, "s3://bkt/ds/bad/: no objects to serve "
                                "(every key was left out)");

  opts_of (&o, "s3://bkt/ds/");
  o.listing = "/nonexistent/listing";
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_int_equal (err.code, S3BD_EIO);
  assert_non_null (strstr (err.msg, "/nonexistent/listing"));

  opts_of (&o, "bkt/ds/");
  assert_int_equal (build_index (NULL, &o, &r, &err), -1);
  assert_non_null (strstr (err.msg, "not an S3 URI"));
}

/* The options both commands take as text: each value parsed, each bad
 * one refused with what was expected and o left as it was, and any other
 * name left alone.
 */
static void
test_opts_set (void **state)
{
  static const struct
  {
    const char *name, *value, *expected;
  } bad[] = {
    { "uid", "me", "expected a decimal number, 0 to 4294967295" },
    { "uid", "-1", "expected a decimal number" },
    { "gid", "4294967296", "expected a decimal number" },
    { "gid", "", "expected a decimal number" },
    { "file-mode", "0999", "expected octal permission bits" },
    { "dir-mode", "10000", "expected octal permission bits" },
    { "label", "seventeen-bytes-x", "at most 16 bytes" },
    { "shard", "2/2", "expected I/N with 0 <= I < N" },
    { "shard", "1/0", "expected I/N" },
    { "shard", "1", "expected I/N" },
    { "shard", "1/2x", "expected I/N" },
    { "shard", "-1/2", "expected I/N" },
  };
  struct build_opts o, before;
  struct s3bd_error err = { 0 };
  size_t i;

  build_opts_init (&o);
  assert_int_equal (build_opts_set (&o, "uid", "1000", &err), 0);
  assert_int_equal (build_opts_set (&o, "gid", "4294967295", &err), 0);
  assert_int_equal (build_opts_set (&o, "file-mode", "0640", &err), 0);
  assert_int_equal (build_opts_set (&o, "dir-mode", "750", &err), 0);
  assert_int_equal (build_opts_set (&o, "label", "sixteen-bytes-ok", &err), 0);
  assert_int_equal (build_opts_set (&o, "shard", "3/4", &err), 0);
  assert_int_equal (o.uid, 1000);
  assert_int_equal (o.gid, 4294967295u);
  assert_int_equal (o.file_mode, 0640);
  assert_int_equal (o.dir_mode, 0750);
  assert_string_equal (o.label, "sixteen-bytes-ok");
  assert_int_equal (o.shard_index, 3);
  assert_int_equal (o.shard_count, 4);

  for (i = 0; i < sizeof bad / sizeof *bad; i++)
    {
      before = o;
      s3bd_error_clear (&err);
      assert_int_equal (build_opts_set (&o, bad[i].name, bad[i].value, &err),
                        -1);
      assert_int_equal (err.code, S3BD_EINVAL);
      if (strstr (err.msg, bad[i].expected) == NULL)
        fail_msg ("%s=%s: %s", bad[i].name, bad[i].value, err.msg);
      assert_memory_equal (&o, &before, sizeof o);
    }
  assert_int_equal (build_opts_set (&o, "endpoint", "x", &err), 1);
  assert_memory_equal (&o, &before, sizeof o);
}

static void
test_source_date_epoch (void **state)
{
  setenv ("SOURCE_DATE_EPOCH", "1234567890", 1);
  assert_true (build_source_date_epoch () == 1234567890);
  setenv ("SOURCE_DATE_EPOCH", "", 1);
  assert_true (build_source_date_epoch () == -1);
  setenv ("SOURCE_DATE_EPOCH", "12x", 1);
  assert_true (build_source_date_epoch () == -1);
  setenv ("SOURCE_DATE_EPOCH", "-5", 1);
  assert_true (build_source_date_epoch () == -1);
  unsetenv ("SOURCE_DATE_EPOCH");
  assert_true (build_source_date_epoch () == -1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_defaults),
    cmocka_unit_test (test_deterministic),
    cmocka_unit_test (test_options),
    cmocka_unit_test (test_manifest_needs_s3),
    cmocka_unit_test (test_errors),
    cmocka_unit_test (test_source_date_epoch),
    cmocka_unit_test (test_opts_set),
    cmocka_unit_test (test_listing_key_too_long),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
