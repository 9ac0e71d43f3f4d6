/* s3bd: unit tests for lib/image/ext4.c, the ext4 image builder.
 *
 * Each test builds a small image through ext4_build, opens what it built
 * with libext2fs (the metadata blocks put back in a memstore, the data
 * blocks left unmapped: zeros) and checks what a reader of the file
 * system sees: the directory tree, each entry's inode, the extent trees
 * of empty, one-extent, several-extent and deeper files, a directory of
 * many entries, sizes and times; and every image passes e2fsck -fn,
 * materialised into a sparse temporary file (skipped when e2fsck is not
 * installed).  Bad input is refused with its subject named and the result
 * left empty.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "s3bd/error.h"
#include "s3bd/ext4.h"

#define BS EXT4_BLOCK_SIZE
#define MAX_EXTENT_LEN 32768u /* blocks in an initialised extent */
#define T0 1700000000         /* the image's own time */
#define UID 1000
#define GID 2000

#define N(a) (sizeof (a) / sizeof *(a))

static void
params (struct ext4_params *p)
{
  memset (p, 0, sizeof *p);
  p->uid = UID;
  p->gid = GID;
  p->file_mode = 0444;
  p->dir_mode = 0555;
  p->time = T0;
  for (int i = 0; i < 16; i++)
    p->uuid[i] = (unsigned char)(0x10 + i);
  p->hash_seed[0] = 0x01234567;
  p->hash_seed[1] = 0x89abcdef;
  memcpy (p->label, "test-ext4", 9);
}

/* Builds files (sorted) and dirs; fails the test on error. */
static void
build (struct ext4_file *files, size_t nfiles, const char *const *dirs,
       size_t ndirs, struct ext4_image *img)
{
  struct ext4_params p;
  struct s3bd_error err;

  params (&p);
  s3bd_error_clear (&err);
  if (ext4_build (&p, files, nfiles, dirs, ndirs, img, &err) == -1)
    fail_msg ("ext4_build: %s", err.msg);
}

static const unsigned char *
meta_data (const struct ext4_image *img, size_t i)
{
  return img->content + (size_t)img->meta[i].content * BS;
}

/* The image as libext2fs sees it. */
static ext2_filsys
open_image (const struct ext4_image *img, struct memstore **store)
{
  ext2_filsys fs = NULL;
  errcode_t e;

  *store = memstore_new ();
  assert_non_null (*store);
  for (size_t i = 0; i < img->nmeta; i++)
    assert_int_equal (
        memstore_put (*store, img->meta[i].block, meta_data (img, i)), 0);
  e = ext2fs_open (memstore_name (*store), EXT2_FLAG_64BITS, 0, 0,
                   memstore_io_manager (), &fs);
  if (e)
    fail_msg ("ext2fs_open: %s", error_message (e));
  assert_int_equal (ext2fs_read_bitmaps (fs), 0);
  return fs;
}

static void
close_image (ext2_filsys fs, struct memstore *store)
{
  ext2fs_close_free (&fs);
  memstore_free (store);
}

static const char *
e2fsck_path (void)
{
  static const char *const where[]
      = { "/usr/sbin/e2fsck", "/sbin/e2fsck", "/usr/bin/e2fsck" };

  for (size_t i = 0; i < N (where); i++)
    if (access (where[i], X_OK) == 0)
      return where[i];
  return NULL;
}

/* e2fsck -fn on the image materialised into a sparse temporary file:
 * exit status 0 (nothing to fix), or the test fails with its output.
 */
static void
fsck_ok (const struct ext4_image *img)
{
  const char *e2fsck = e2fsck_path ();
  char path[] = "/tmp/test-ext4.XXXXXX";
  char cmd[256], out[8192];
  int fd, status;
  FILE *f;
  size_t n;

  if (e2fsck == NULL)
    {
      print_message ("e2fsck is not installed: not checked\n");
      return;
    }
  fd = mkstemp (path);
  assert_true (fd >= 0);
  assert_int_equal (ftruncate (fd, (off_t)(img->blocks_count * BS)), 0);
  for (size_t i = 0; i < img->nmeta; i++)
    assert_int_equal (
        pwrite (fd, meta_data (img, i), BS, (off_t)(img->meta[i].block * BS)),
        BS);
  close (fd);
  snprintf (cmd, sizeof cmd, "%s -fn %s 2>&1", e2fsck, path);
  f = popen (cmd, "r");
  assert_non_null (f);
  n = fread (out, 1, sizeof out - 1, f);
  out[n] = '\0';
  status = pclose (f);
  unlink (path);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    fail_msg ("e2fsck -fn: status %d:\n%s", status, out);
}

static ext2_ino_t
lookup (ext2_filsys fs, const char *path)
{
  ext2_ino_t ino = EXT2_ROOT_INO;
  errcode_t e;

  if (*path == '\0')
    return ino;
  e = ext2fs_namei (fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino);
  if (e)
    fail_msg ("%s: not in the image: %s", path, error_message (e));
  return ino;
}

static void
read_inode (ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *inode)
{
  memset (inode, 0, sizeof *inode);
  assert_int_equal (ext2fs_read_inode_full (fs, ino, (struct ext2_inode *)inode,
                                            sizeof *inode),
                    0);
}

/* ext4's time: 32 low bits, signed, plus two epoch bits and the
 * nanoseconds in the extra field.
 */
static int64_t
time_of (uint32_t lo, uint32_t extra, uint32_t *nsec)
{
  *nsec = extra >> 2;
  return (int64_t)(int32_t)lo + ((int64_t)(extra & 3) << 32);
}

static void
check_times (const struct ext2_inode_large *ino, int64_t sec, uint32_t nsec)
{
  const uint32_t lo[4]
      = { ino->i_mtime, ino->i_atime, ino->i_ctime, ino->i_crtime };
  const uint32_t extra[4] = { ino->i_mtime_extra, ino->i_atime_extra,
                              ino->i_ctime_extra, ino->i_crtime_extra };

  for (int i = 0; i < 4; i++)
    {
      uint32_t ns;
      int64_t t = time_of (lo[i], extra[i], &ns);

      if (t != sec || ns != nsec)
        fail_msg ("time %d is %" PRId64 ".%09u, expected %" PRId64 ".%09u", i,
                  t, ns, sec, nsec);
    }
}

/* ---- Directories ---- */

struct entry
{
  char name[256];
  ext2_ino_t ino;
  int type;
};

struct listing
{
  struct entry *e;
  size_t n, cap;
};

static int
list_entry (ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int off,
            int blocksize, char *buf, void *arg)
{
  struct listing *l = arg;
  int nl = ext2fs_dirent_name_len (de);

  if (l->n == l->cap)
    {
      l->cap = l->cap ? l->cap * 2 : 16;
      l->e = realloc (l->e, l->cap * sizeof *l->e);
      assert_non_null (l->e);
    }
  memcpy (l->e[l->n].name, de->name, (size_t)nl);
  l->e[l->n].name[nl] = '\0';
  l->e[l->n].ino = de->inode;
  l->e[l->n].type = ext2fs_dirent_file_type (de);
  l->n++;
  return 0;
}

static struct listing
list_dir (ext2_filsys fs, ext2_ino_t dir)
{
  struct listing l = { 0 };

  assert_int_equal (ext2fs_dir_iterate2 (fs, dir, 0, NULL, list_entry, &l), 0);
  return l;
}

/* The directory's entries are exactly ".", "..", then names[] in order,
 * with those types.
 */
static void
check_dir (ext2_filsys fs, const char *path, ext2_ino_t parent,
           const char *const *names, const int *types, size_t n)
{
  ext2_ino_t ino = lookup (fs, path);
  struct listing l = list_dir (fs, ino);

  if (l.n != n + 2)
    fail_msg ("/%s: %zu entries, expected %zu", path, l.n, n + 2);
  assert_string_equal (l.e[0].name, ".");
  assert_int_equal (l.e[0].ino, ino);
  assert_string_equal (l.e[1].name, "..");
  assert_int_equal (l.e[1].ino, parent);
  for (size_t i = 0; i < n; i++)
    {
      assert_string_equal (l.e[i + 2].name, names[i]);
      assert_int_equal (l.e[i + 2].type, types[i]);
    }
  free (l.e);
}

static void
test_tree (void **state)
{
  struct ext4_file files[] = {
    { "a/b/c/deep.txt", 10, T0 + 1, 0, 0 },
    { "a/x", BS, T0 + 2, 0, 0 },
    { "top", 0, T0 + 3, 0, 0 },
  };
  const char *const dirs[] = { "a/b", "e/f" };
  const char *const root_names[] = { "a", "e", "lost+found", "top" };
  const int root_types[]
      = { EXT2_FT_DIR, EXT2_FT_DIR, EXT2_FT_DIR, EXT2_FT_REG_FILE };
  const char *const a_names[] = { "b", "x" };
  const int a_types[] = { EXT2_FT_DIR, EXT2_FT_REG_FILE };
  const char *const c_names[] = { "deep.txt" };
  const int c_types[] = { EXT2_FT_REG_FILE };
  /* Directories numbered from 12 in path order, then the files. */
  static const struct
  {
    const char *path;
    ext2_ino_t ino;
    uint16_t links;
  } expect[] = {
    { "", EXT2_ROOT_INO, 5 }, { "lost+found", 11, 2 },     { "a", 12, 3 },
    { "a/b", 13, 3 },         { "a/b/c", 14, 2 },          { "e", 15, 3 },
    { "e/f", 16, 2 },         { "a/b/c/deep.txt", 17, 1 }, { "a/x", 18, 1 },
    { "top", 19, 1 },
  };
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;

  build (files, N (files), dirs, N (dirs), &img);
  assert_int_equal (img.dirs, 7);
  assert_int_equal (img.inodes, 19);
  assert_int_equal (img.data_blocks, 2);
  assert_int_equal (img.data_start % 256, 0); /* on 1 MiB */
  assert_true (img.data_start + img.data_blocks <= img.blocks_count);
  /* Each file's data after the last, from data_start; an empty file
   * holds none and starts where the next would.
   */
  assert_int_equal (files[0].first_block, img.data_start);
  assert_int_equal (files[1].first_block, img.data_start + 1);
  assert_int_equal (files[2].first_block, img.data_start + 2);
  /* Metadata only, sorted, all in front of the data, no zero block, each
   * distinct content once.
   */
  for (size_t i = 0; i < img.nmeta; i++)
    {
      static const unsigned char zero[BS];

      assert_true (img.meta[i].block < img.data_start);
      assert_true (i == 0 || img.meta[i].block > img.meta[i - 1].block);
      assert_true (img.meta[i].content < img.ncontent);
      assert_true (memcmp (meta_data (&img, i), zero, BS) != 0);
    }
  for (size_t i = 0; i < img.ncontent; i++)
    for (size_t j = i + 1; j < img.ncontent; j++)
      assert_true (memcmp (img.content + i * BS, img.content + j * BS, BS)
                   != 0);

  fs = open_image (&img, &store);
  assert_int_equal (ext2fs_blocks_count (fs->super), img.blocks_count);
  assert_int_equal (fs->super->s_inodes_count - fs->super->s_free_inodes_count,
                    19);
  assert_memory_equal (fs->super->s_volume_name, "test-ext4\0\0\0\0\0\0\0", 16);
  assert_int_equal (fs->super->s_uuid[0], 0x10);
  assert_true (ext2fs_has_feature_extents (fs->super));
  assert_true (ext2fs_has_feature_64bit (fs->super));
  assert_false (ext2fs_has_feature_journal (fs->super));
  assert_false (ext2fs_has_feature_metadata_csum (fs->super));

  check_dir (fs, "", EXT2_ROOT_INO, root_names, root_types, N (root_names));
  check_dir (fs, "a", EXT2_ROOT_INO, a_names, a_types, N (a_names));
  check_dir (fs, "a/b", 12, (const char *const[]){ "c" },
             (const int[]){ EXT2_FT_DIR }, 1);
  check_dir (fs, "a/b/c", 13, c_names, c_types, N (c_names));
  check_dir (fs, "e", EXT2_ROOT_INO, (const char *const[]){ "f" },
             (const int[]){ EXT2_FT_DIR }, 1);
  check_dir (fs, "e/f", 15, NULL, NULL, 0);
  check_dir (fs, "lost+found", EXT2_ROOT_INO, NULL, NULL, 0);
  for (size_t i = 0; i < N (expect); i++)
    {
      struct ext2_inode_large ino;
      bool dir = i < 7;

      if (lookup (fs, expect[i].path) != expect[i].ino)
        fail_msg ("/%s: inode %u, expected %u", expect[i].path,
                  lookup (fs, expect[i].path), expect[i].ino);
      read_inode (fs, expect[i].ino, &ino);
      assert_int_equal (ino.i_links_count, expect[i].links);
      assert_true (ino.i_flags & EXT4_EXTENTS_FL);
      assert_int_equal (ino.i_extra_isize, 32);
      if (dir)
        {
          bool lf = expect[i].ino == 11;

          assert_int_equal (ino.i_mode, LINUX_S_IFDIR | (lf ? 0700 : 0555));
          assert_int_equal (inode_uid (ino), lf ? 0 : UID);
          assert_int_equal (inode_gid (ino), lf ? 0 : GID);
          assert_int_equal (EXT2_I_SIZE (&ino), BS); /* one block each */
          check_times (&ino, T0, 0);
        }
      else
        {
          assert_int_equal (ino.i_mode, LINUX_S_IFREG | 0444);
          assert_int_equal (inode_uid (ino), UID);
          assert_int_equal (inode_gid (ino), GID);
          assert_int_equal (EXT2_I_SIZE (&ino), files[i - 7].size);
          check_times (&ino, files[i - 7].mtime, 0);
        }
      assert_true (ext2fs_test_inode_bitmap2 (fs->inode_map, expect[i].ino));
    }
  /* The data blocks are in use, the next one free. */
  assert_true (ext2fs_test_block_bitmap2 (fs->block_map, img.data_start));
  assert_true (ext2fs_test_block_bitmap2 (fs->block_map, img.data_start + 1));
  if (img.data_start + 2 < img.blocks_count)
    assert_false (
        ext2fs_test_block_bitmap2 (fs->block_map, img.data_start + 2));
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
}

/* No files, no directories: the root and lost+found. */
static void
test_empty_image (void **state)
{
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;
  const char *const names[] = { "lost+found" };
  const int types[] = { EXT2_FT_DIR };

  build (NULL, 0, NULL, 0, &img);
  assert_int_equal (img.dirs, 2);
  assert_int_equal (img.data_blocks, 0);
  fs = open_image (&img, &store);
  check_dir (fs, "", EXT2_ROOT_INO, names, types, 1);
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
}

/* ---- Files and their extents ---- */

/* Checks the file's extent tree: leaves of at most MAX_EXTENT_LEN blocks
 * tiling [0, nblocks) from first_block on, the tree as deep as expected,
 * and i_blocks counting the data and the tree's own blocks.
 */
static void
check_extents (ext2_filsys fs, const char *path, uint64_t size,
               uint64_t first_block, int depth, uint64_t tree_blocks)
{
  ext2_ino_t n = lookup (fs, path);
  struct ext2_inode_large ino;
  ext2_extent_handle_t h;
  struct ext2_extent_info info;
  struct ext2fs_extent x;
  uint64_t nb = (size + BS - 1) / BS, lblk = 0, leaves = 0;
  errcode_t e;
  int op = EXT2_EXTENT_ROOT;

  read_inode (fs, n, &ino);
  assert_int_equal (EXT2_I_SIZE (&ino), size);
  assert_int_equal (ext2fs_get_stat_i_blocks (fs, (struct ext2_inode *)&ino),
                    (nb + tree_blocks) * (BS / 512));
  assert_int_equal (ext2fs_extent_open2 (fs, n, (struct ext2_inode *)&ino, &h),
                    0);
  assert_int_equal (ext2fs_extent_get_info (h, &info), 0);
  assert_int_equal (info.max_depth, depth);
  for (;;)
    {
      e = ext2fs_extent_get (h, op, &x);
      op = EXT2_EXTENT_NEXT_LEAF;
      if (e == EXT2_ET_EXTENT_NO_NEXT || (e && nb == 0))
        break;
      if (e)
        fail_msg ("%s: extent after block %" PRIu64 ": %s", path, lblk,
                  error_message (e));
      if (x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)
        continue;
      if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF))
        continue;
      if (x.e_lblk != lblk || x.e_pblk != first_block + lblk
          || x.e_len
                 != (nb - lblk < MAX_EXTENT_LEN ? nb - lblk : MAX_EXTENT_LEN)
          || (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
        fail_msg ("%s: extent %" PRIu64 ": %llu+%u at %llu, expected at "
                  "logical %" PRIu64,
                  path, leaves, (unsigned long long)x.e_lblk, x.e_len,
                  (unsigned long long)x.e_pblk, lblk);
      lblk += x.e_len;
      leaves++;
    }
  assert_int_equal (lblk, nb);
  assert_int_equal (leaves, (nb + MAX_EXTENT_LEN - 1) / MAX_EXTENT_LEN);
  ext2fs_extent_free (h);

  /* And block by block where it matters: the ends of extents. */
  for (uint64_t k = 0; k < nb; k += k % MAX_EXTENT_LEN ? 1 : MAX_EXTENT_LEN - 1)
    {
      blk64_t p = 0;

      assert_int_equal (
          ext2fs_bmap2 (fs, n, (struct ext2_inode *)&ino, NULL, 0, k, NULL, &p),
          0);
      assert_int_equal (p, first_block + k);
    }
}

static void
test_empty_file_extent_header (void **state)
{
  struct ext4_file files[] = {
    { "a", 1, T0, 0, 0 },
    { "empty", 0, T0, 0, 0 },
    { "z", 5, T0, 0, 0 },
  };
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;
  struct ext2_inode_large ino;
  const struct ext3_extent_header *h;
  blk64_t p = 1;

  build (files, N (files), NULL, 0, &img);
  assert_int_equal (files[1].first_block, files[2].first_block);
  fs = open_image (&img, &store);
  read_inode (fs, lookup (fs, "empty"), &ino);
  /* An extent tree with no extents: the header alone, in the inode. */
  h = (const struct ext3_extent_header *)ino.i_block;
  assert_true (ino.i_flags & EXT4_EXTENTS_FL);
  assert_int_equal (h->eh_magic, EXT3_EXT_MAGIC);
  assert_int_equal (h->eh_entries, 0);
  assert_int_equal (h->eh_max, 4);
  assert_int_equal (h->eh_depth, 0);
  for (size_t i = sizeof *h / 4; i < EXT2_N_BLOCKS; i++)
    assert_int_equal (ino.i_block[i], 0);
  assert_int_equal (EXT2_I_SIZE (&ino), 0);
  assert_int_equal (ino.i_blocks, 0);
  assert_int_equal (ext2fs_bmap2 (fs, lookup (fs, "empty"),
                                  (struct ext2_inode *)&ino, NULL, 0, 0, NULL,
                                  &p),
                    0);
  assert_int_equal (p, 0); /* nothing mapped */
  check_extents (fs, "a", 1, files[0].first_block, 0, 0);
  check_extents (fs, "z", 5, files[2].first_block, 0, 0);
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
}

static void
test_files_with_several_extents (void **state)
{
  const uint64_t E = (uint64_t)MAX_EXTENT_LEN * BS; /* bytes in an extent */
  struct ext4_file files[] = {
    { "d1-340-extents", 340 * E, T0, 0, 0 },        /* one leaf, full */
    { "d1-341-extents", 340 * E + 1, T0, 0, 0 },    /* two leaves */
    { "d2-1361-extents", 1360 * E + BS, T0, 0, 0 }, /* an index level */
    { "e1-exact", E, T0, 0, 0 },
    { "e2", E + 1, T0, 0, 0 },
    { "e4-in-the-inode", 4 * E, T0, 0, 0 },
    { "e5-one-leaf", 4 * E + 100, T0, 0, 0 },
    { "small", 3, T0, 0, 0 },
  };
  /* Depth and tree blocks outside the inode. */
  static const struct
  {
    int depth;
    uint64_t tree;
  } expect[] = { { 1, 1 }, { 1, 2 }, { 2, 5 + 1 }, { 0, 0 },
                 { 0, 0 }, { 0, 0 }, { 1, 1 },     { 0, 0 } };
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;
  uint64_t next;

  build (files, N (files), NULL, 0, &img);
  next = img.data_start;
  for (size_t i = 0; i < N (files); i++)
    {
      assert_int_equal (files[i].first_block, next);
      next += (files[i].size + BS - 1) / BS;
    }
  assert_int_equal (next - img.data_start, img.data_blocks);
  fs = open_image (&img, &store);
  for (size_t i = 0; i < N (files); i++)
    check_extents (fs, files[i].path, files[i].size, files[i].first_block,
                   expect[i].depth, expect[i].tree);
  /* Every data block is in use. */
  {
    blk64_t clear;

    assert_int_equal (ext2fs_find_first_zero_block_bitmap2 (
                          fs->block_map, img.data_start,
                          img.data_start + img.data_blocks - 1, &clear),
                      ENOENT);
  }
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
}

/* ---- A directory of many entries ---- */

#define MANY 3000

static int
path_cmp (const void *a, const void *b)
{
  return strcmp (((const struct ext4_file *)a)->path,
                 ((const struct ext4_file *)b)->path);
}

static void
test_directory_with_many_entries (void **state)
{
  struct ext4_file *files = calloc (MANY + 1, sizeof *files);
  char (*names)[300] = calloc (MANY + 1, sizeof *names);
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;
  struct ext2_inode_large ino;
  struct listing l;
  ext2_ino_t dir;

  assert_non_null (files);
  assert_non_null (names);
  /* Names of every length from 5 to 255, so entries of every size fall
   * on block ends.
   */
  for (size_t i = 0; i < MANY; i++)
    {
      size_t len = 1 + i % 255;

      snprintf (names[i], sizeof names[i], "many/%05zu", i);
      if (len > 5)
        memset (names[i] + 10, 'a' + (int)(i % 26), len - 5);
      names[i][5 + (len > 5 ? len : 5)] = '\0';
      files[i] = (struct ext4_file){ names[i], i % 3, T0, 0, 0 };
    }
  files[MANY] = (struct ext4_file){ "zz", 1, T0, 0, 0 };
  qsort (files, MANY + 1, sizeof *files, path_cmp);
  build (files, MANY + 1, NULL, 0, &img);
  fs = open_image (&img, &store);
  dir = lookup (fs, "many");
  read_inode (fs, dir, &ino);
  assert_true (EXT2_I_SIZE (&ino) > 100 * BS);
  assert_int_equal (EXT2_I_SIZE (&ino) % BS, 0);
  assert_int_equal (ino.i_links_count, 2);
  l = list_dir (fs, dir);
  assert_int_equal (l.n, MANY + 2);
  for (size_t i = 0; i < MANY; i++)
    {
      const char *name = files[i].path + 5;

      if (strcmp (l.e[i + 2].name, name) != 0)
        fail_msg ("entry %zu is '%s', expected '%s'", i + 2, l.e[i + 2].name,
                  name);
      assert_int_equal (l.e[i + 2].type, EXT2_FT_REG_FILE);
      assert_int_equal (l.e[i + 2].ino, 13 + i); /* files in path order */
    }
  free (l.e);
  /* Lookups of the first, last and a middle entry. */
  assert_int_equal (lookup (fs, files[0].path), 13);
  assert_int_equal (lookup (fs, files[MANY / 2].path), 13 + MANY / 2);
  assert_int_equal (lookup (fs, files[MANY - 1].path), 13 + MANY - 1);
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
  free (files);
  free (names);
}

/* A directory with n subdirectories has n + 2 links, written as 1
 * (dir_nlink) only past EXT2_LINK_MAX, where the kernel and e2fsck stop
 * counting.
 */
static void
check_subdirectories (size_t n, uint16_t links)
{
  char (*names)[32] = calloc (n, sizeof *names);
  const char **dirs = calloc (n, sizeof *dirs);
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;
  struct ext2_inode_large ino;

  assert_non_null (names);
  assert_non_null (dirs);
  for (size_t i = 0; i < n; i++)
    {
      snprintf (names[i], sizeof names[i], "d/%06zu", i);
      dirs[i] = names[i];
    }
  build (NULL, 0, dirs, n, &img);
  fs = open_image (&img, &store);
  read_inode (fs, lookup (fs, "d"), &ino);
  if (ino.i_links_count != links)
    fail_msg ("%zu subdirectories: %u links, expected %u", n, ino.i_links_count,
              links);
  read_inode (fs, lookup (fs, "d/000000"), &ino);
  assert_int_equal (ino.i_links_count, 2);
  read_inode (fs, EXT2_ROOT_INO, &ino);
  assert_int_equal (ino.i_links_count, 4); /* ., .., d, lost+found */
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
  free (dirs);
  free (names);
}

static void
test_directory_link_count_limit (void **state)
{
  check_subdirectories (EXT2_LINK_MAX - 1, 1);
  /* Exactly EXT2_LINK_MAX is still a count: the kernel and e2fsck write
   * 1 only past it (e2fsck -fn: "ref count is 1, should be 65000").
   */
  check_subdirectories (EXT2_LINK_MAX - 2, EXT2_LINK_MAX);
}

/* ---- Sizes and times ---- */

static void
test_sizes_and_mtimes (void **state)
{
  struct ext4_file files[] = {
    { "f00-empty", 0, 0, 0, 0 },
    { "f01-one", 1, -1, 999999999, 0 },
    { "f02-block-less-one", BS - 1, INT32_MIN, 1, 0 },
    { "f03-block", BS, INT32_MAX, 500000000, 0 },
    { "f04-block-and-one", BS + 1, (int64_t)INT32_MAX + 1, 0, 0 },
    { "f05-past-4-GiB", (5ull << 30) + 7, 1ll << 33, 123456789, 0 },
    /* The last second ext4 holds, in 2446. */
    { "f06-2446", 1, (3ll << 32) + INT32_MAX, 999999999, 0 },
    { "f07-now", 12345, T0, 42, 0 },
  };
  struct ext4_image img;
  struct memstore *store;
  ext2_filsys fs;

  build (files, N (files), NULL, 0, &img);
  fs = open_image (&img, &store);
  for (size_t i = 0; i < N (files); i++)
    {
      struct ext2_inode_large ino;

      read_inode (fs, lookup (fs, files[i].path), &ino);
      if (EXT2_I_SIZE (&ino) != files[i].size)
        fail_msg ("%s: size %llu, expected %" PRIu64, files[i].path,
                  (unsigned long long)EXT2_I_SIZE (&ino), files[i].size);
      check_times (&ino, files[i].mtime, files[i].mtime_nsec);
    }
  check_extents (fs, "f05-past-4-GiB", files[5].size, files[5].first_block, 1,
                 1);
  close_image (fs, store);
  fsck_ok (&img);
  ext4_image_free (&img);
}

/* ---- Determinism ---- */

static void
test_same_input_same_image (void **state)
{
  struct ext4_file files[] = {
    { "a/1", 10, T0, 0, 0 },
    { "a/2", 3 * BS, T0, 0, 0 },
    { "b", 0, T0, 0, 0 },
  };
  struct ext4_image x, y;

  build (files, N (files), NULL, 0, &x);
  build (files, N (files), NULL, 0, &y);
  assert_int_equal (x.blocks_count, y.blocks_count);
  assert_int_equal (x.nmeta, y.nmeta);
  assert_int_equal (x.ncontent, y.ncontent);
  assert_memory_equal (x.meta, y.meta, x.nmeta * sizeof *x.meta);
  assert_memory_equal (x.content, y.content, x.ncontent * BS);
  ext4_image_free (&x);
  ext4_image_free (&y);
  ext4_image_free (&y); /* twice is safe */
  assert_null (y.meta);
}

/* ---- Refusals ---- */

static void
refused (struct ext4_file *files, size_t nfiles, const char *const *dirs,
         size_t ndirs, const char *msg)
{
  struct ext4_params p;
  struct ext4_image img;
  struct s3bd_error err;

  params (&p);
  s3bd_error_clear (&err);
  memset (&img, 0x5a, sizeof img);
  assert_int_equal (ext4_build (&p, files, nfiles, dirs, ndirs, &img, &err),
                    -1);
  assert_int_equal (err.code, S3BD_EINVAL);
  if (strstr (err.msg, msg) == NULL)
    fail_msg ("message '%s' does not say '%s'", err.msg, msg);
  assert_null (img.meta);
  assert_null (img.content);
  assert_int_equal (img.nmeta, 0);
  assert_int_equal (img.ncontent, 0);
}

static void
test_refusals (void **state)
{
  struct ext4_file twice[] = { { "a/x", 1, T0, 0, 0 }, { "a/x", 2, T0, 0, 0 } };
  struct ext4_file file_and_dir[]
      = { { "a", 1, T0, 0, 0 }, { "a/b", 1, T0, 0, 0 } };
  struct ext4_file file_as_explicit_dir[] = { { "d", 1, T0, 0, 0 } };
  const char *const dir_d[] = { "d" };
  struct ext4_file lost_found[] = { { "lost+found", 1, T0, 0, 0 } };
  struct ext4_file huge[] = { { "big", 1ull << 50, T0, 0, 0 } };

  refused (twice, N (twice), NULL, 0,
           "two entries named 'x' in directory '/a'");
  refused (file_and_dir, N (file_and_dir), NULL, 0,
           "two entries named 'a' in directory '/'");
  refused (file_as_explicit_dir, N (file_as_explicit_dir), dir_d, 1,
           "two entries named 'd'");
  refused (lost_found, N (lost_found), NULL, 0,
           "two entries named 'lost+found'");
  refused (huge, N (huge), NULL, 0, "big: 1125899906842624 bytes is too large");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_tree),
    cmocka_unit_test (test_empty_image),
    cmocka_unit_test (test_empty_file_extent_header),
    cmocka_unit_test (test_files_with_several_extents),
    cmocka_unit_test (test_directory_with_many_entries),
    cmocka_unit_test (test_directory_link_count_limit),
    cmocka_unit_test (test_sizes_and_mtimes),
    cmocka_unit_test (test_same_input_same_image),
    cmocka_unit_test (test_refusals),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
