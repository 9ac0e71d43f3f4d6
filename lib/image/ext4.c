/* s3bd: the ext4 image builder.  See include/s3bd/ext4.h.
 *
 * How it works.
 *  1. The tree: every directory of the image (the root, lost+found, the
 *     explicit ones, and every parent of a file) gets an entry in a hash
 *     map by path; each directory lists its children, sorted by name.
 *     Inode numbers: 2 root, 11 lost+found, then the other directories in
 *     path order from 12, then the files in path order.
 *  2. The sizes: directory blocks (linear directories, entries packed in
 *     order) and extent-tree blocks of files with more than 4 extents are
 *     counted before anything is laid out.
 *  3. The layout: libext2fs initialises a file system big enough for
 *     metadata + data and places the bitmaps and inode tables (flex_bg
 *     with one flex group packs them all at the front).  After them come
 *     the directory blocks, then the extent-tree blocks, then, from a
 *     1 MiB boundary, the data region.  If the first guess of the size was
 *     too small, it is grown and laid out again.
 *  4. The writing: directory blocks, extent-tree blocks and whole inode
 *     table blocks are composed here and written once each; libext2fs
 *     keeps the bitmaps and counters (alloc_stats) and writes the
 *     superblock, group descriptors and bitmaps when the file system is
 *     closed.  Everything goes to an in-memory store (ext4io.c).
 *
 * Why not ext2fs_mkdir/ext2fs_link/ext2fs_fallocate: link is quadratic on
 * linear directories, fallocate puts extent blocks inside the data
 * stream, and writing each inode through the library re-reads and
 * re-writes its inode table block sixteen times.
 *
 * Directories are linear (no htree index) for now: correct for every
 * size, but a lookup in a directory of N entries reads O(N) bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <ext2fs/ext3_extents.h>

#include "common/hashmap.h"
#include "common/vector.h"
#include "s3bd/ext4.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image builder writes on-disk structures in host order"
#endif

#define BS EXT4_BLOCK_SIZE
#define INODE_SIZE 256
#define EXTRA_ISIZE 32
#define LOST_FOUND_INO 11
#define FIRST_DIR_INO 12
#define MAX_EXTENT_LEN 32768u              /* blocks in an initialised extent */
#define EXTENTS_PER_BLOCK ((BS - 12) / 12) /* 340 */
#define DATA_ALIGN 256                     /* data region starts on 1 MiB */

struct child
{
  const char *name;
  uint32_t len;
  uint32_t ino;
  uint8_t type; /* EXT2_FT_DIR or EXT2_FT_REG_FILE */
};

DEFINE_VECTOR (child_vector, struct child);

struct dir
{
  const char *path; /* not NUL-terminated at len */
  size_t len;
  uint32_t parent; /* index in dirs */
  uint32_t ino;
  uint32_t parent_ino;
  uint32_t nsubdirs;
  struct child_vector kids;
  uint64_t first_block, nblocks;
};

DEFINE_VECTOR (dir_vector, struct dir);

struct builder
{
  const struct ext4_params *p;
  struct ext4_file *files;
  size_t nfiles;
  struct dir_vector dirs;
  struct hashmap map; /* path -> dir index + 1 */
  uint32_t *file_ino; /* per file */
  uint64_t dir_blocks, extent_blocks, data_blocks;
  ext2_filsys fs;
  struct memstore *store;
  struct s3bd_error *err;
};

static int
fail_ext2 (struct builder *b, errcode_t e, const char *what)
{
  return s3bd_fail (b->err, e == EXT2_ET_NO_MEMORY ? S3BD_ENOMEM : S3BD_EINVAL,
                    "building the ext4 image: %s: %s", what, error_message (e));
}

static uint64_t
blocks_of (uint64_t size)
{
  return size / BS + (size % BS != 0);
}

/* ---- The tree ---- */

static uint64_t
path_hash (const char *s, size_t len)
{
  uint64_t h = 0xcbf29ce484222325ULL;

  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
  return h;
}

struct path_key
{
  const struct builder *b;
  const char *path;
  size_t len;
};

static bool
path_eq (const void *ctx, uint64_t value)
{
  const struct path_key *k = ctx;
  const struct dir *d = &k->b->dirs.ptr[value - 1];

  return d->len == k->len && memcmp (d->path, k->path, k->len) == 0;
}

/* Returns the index of the directory at path, creating it and its
 * parents; or -1 on ENOMEM.
 */
static long
ensure_dir (struct builder *b, const char *path, size_t len)
{
  struct path_key key = { b, path, len };
  uint64_t hash = path_hash (path, len);
  struct hashmap_slot *slot = hashmap_lookup (&b->map, hash, path_eq, &key);
  long parent = 0;
  const char *slash;

  if (slot)
    return (long)slot->value - 1;
  if (len > 0)
    {
      slash = NULL;
      for (size_t i = len; i > 0; i--)
        if (path[i - 1] == '/')
          {
            slash = path + i - 1;
            break;
          }
      parent = ensure_dir (b, path, slash ? (size_t)(slash - path) : 0);
      if (parent < 0)
        return -1;
    }
  /* Indexes and inode numbers of directories are 32-bit. */
  if (b->dirs.len >= UINT32_MAX - 2
      || dir_vector_append (&b->dirs,
                            (struct dir){ .path = path,
                                          .len = len,
                                          .parent = (uint32_t)parent })
             == -1
      || hashmap_insert (&b->map, hash, b->dirs.len) == -1)
    return -1;
  return (long)b->dirs.len - 1;
}

static int
add_child (struct dir *d, const char *name, size_t len, uint32_t ino,
           uint8_t type)
{
  return child_vector_append (&d->kids,
                              (struct child){ name, (uint32_t)len, ino, type });
}

static int
child_cmp (const void *a, const void *b)
{
  const struct child *x = a, *y = b;
  int r = memcmp (x->name, y->name, x->len < y->len ? x->len : y->len);

  return r ? r : (x->len > y->len) - (x->len < y->len);
}

static const struct builder *sort_builder;

static int
dir_order_cmp (const void *a, const void *b)
{
  const struct dir *x = &sort_builder->dirs.ptr[*(const uint32_t *)a];
  const struct dir *y = &sort_builder->dirs.ptr[*(const uint32_t *)b];
  int r = memcmp (x->path, y->path, x->len < y->len ? x->len : y->len);

  return r ? r : (x->len > y->len) - (x->len < y->len);
}

static const char *
last_segment (const char *path, size_t len, size_t *seglen)
{
  size_t i = len;

  while (i > 0 && path[i - 1] != '/')
    i--;
  *seglen = len - i;
  return path + i;
}

static int
build_tree (struct builder *b, const char *const *dirs, size_t ndirs)
{
  uint32_t *order = NULL;
  long lf, last = -1;
  const char *last_parent = NULL;
  size_t last_len = 0;
  uint32_t ino;
  int ret = -1;

  if (ensure_dir (b, "", 0) != 0)
    goto nomem;
  lf = ensure_dir (b, "lost+found", 10);
  if (lf != 1)
    goto nomem;
  for (size_t i = 0; i < ndirs; i++)
    if (ensure_dir (b, dirs[i], strlen (dirs[i])) < 0)
      goto nomem;
  /* Files are sorted, so runs of them share a parent: remember it. */
  for (size_t i = 0; i < b->nfiles; i++)
    {
      const char *path = b->files[i].path;
      const char *slash = strrchr (path, '/');
      size_t plen = slash ? (size_t)(slash - path) : 0;

      if (last < 0 || plen != last_len || memcmp (path, last_parent, plen) != 0)
        {
          last = ensure_dir (b, path, plen);
          if (last < 0)
            goto nomem;
          last_parent = path;
          last_len = plen;
        }
      b->file_ino[i] = (uint32_t)last; /* parent for now */
    }

  /* Inode numbers: directories in path order, then files. */
  order = calloc (b->dirs.len, sizeof *order);
  if (order == NULL)
    goto nomem;
  for (size_t i = 0; i < b->dirs.len; i++)
    order[i] = (uint32_t)i;
  sort_builder = b;
  qsort (order + 2, b->dirs.len - 2, sizeof *order, dir_order_cmp);
  b->dirs.ptr[0].ino = EXT2_ROOT_INO;
  b->dirs.ptr[1].ino = LOST_FOUND_INO;
  ino = FIRST_DIR_INO;
  for (size_t i = 2; i < b->dirs.len; i++)
    b->dirs.ptr[order[i]].ino = ino++;
  for (size_t i = 0; i < b->dirs.len; i++)
    b->dirs.ptr[i].parent_ino = b->dirs.ptr[b->dirs.ptr[i].parent].ino;
  for (size_t i = 1; i < b->dirs.len; i++)
    {
      struct dir *d = &b->dirs.ptr[order[i]];
      size_t nl;
      const char *name = last_segment (d->path, d->len, &nl);

      if (add_child (&b->dirs.ptr[d->parent], name, nl, d->ino, EXT2_FT_DIR)
          == -1)
        goto nomem;
      b->dirs.ptr[d->parent].nsubdirs++;
    }
  for (size_t i = 0; i < b->nfiles; i++)
    {
      struct dir *parent = &b->dirs.ptr[b->file_ino[i]];
      const char *path = b->files[i].path;
      size_t nl;
      const char *name = last_segment (path, strlen (path), &nl);

      if (ino == UINT32_MAX)
        {
          s3bd_fail (b->err, S3BD_EINVAL, "too many files for ext4: %zu",
                     b->nfiles);
          goto out;
        }
      b->file_ino[i] = ino++;
      if (add_child (parent, name, nl, b->file_ino[i], EXT2_FT_REG_FILE) == -1)
        goto nomem;
    }
  for (size_t i = 0; i < b->dirs.len; i++)
    {
      struct dir *d = &b->dirs.ptr[i];

      if (d->kids.len > 1)
        qsort (d->kids.ptr, d->kids.len, sizeof *d->kids.ptr, child_cmp);
      for (size_t k = 1; k < d->kids.len; k++)
        if (child_cmp (&d->kids.ptr[k - 1], &d->kids.ptr[k]) == 0)
          {
            s3bd_fail (b->err, S3BD_EINVAL,
                       "two entries named '%.*s' in "
                       "directory '/%.*s'",
                       (int)d->kids.ptr[k].len, d->kids.ptr[k].name,
                       (int)d->len, d->path);
            goto out;
          }
    }
  ret = 0;
  goto out;

nomem:
  s3bd_fail (b->err, S3BD_ENOMEM,
             "out of memory building the directory "
             "tree");
out:
  free (order);
  return ret;
}

/* ---- Sizes ---- */

static size_t
rec_len (size_t namelen)
{
  return (8 + namelen + 3) & ~(size_t)3;
}

/* Walks a directory's entries as they are packed into blocks ("." and
 * ".." first, then the children in name order) and calls fn (when not
 * NULL) for each with its block, offset and record length; the last entry
 * of a block stretches to the block's end.  Returns the number of blocks.
 */
typedef void (*entry_fn) (void *arg, uint64_t blk, size_t off, size_t len,
                          const char *name, size_t namelen, uint32_t ino,
                          uint8_t type);

struct pending
{
  bool valid;
  uint64_t blk;
  size_t off, len, namelen;
  const char *name;
  uint32_t ino;
  uint8_t type;
};

static void
emit_pending (struct pending *pe, bool last, entry_fn fn, void *arg)
{
  if (pe->valid && fn)
    fn (arg, pe->blk, pe->off, last ? BS - pe->off : pe->len, pe->name,
        pe->namelen, pe->ino, pe->type);
  pe->valid = false;
}

static uint64_t
dir_layout (const struct dir *d, entry_fn fn, void *arg)
{
  struct pending pe = { 0 };
  uint64_t blk = 0;
  size_t off = 0;

  for (size_t i = 0; i < d->kids.len + 2; i++)
    {
      const struct child *k = i >= 2 ? &d->kids.ptr[i - 2] : NULL;
      size_t nl = k ? k->len : i + 1;
      size_t len = rec_len (nl);

      if (off + len > BS)
        {
          emit_pending (&pe, true, fn, arg);
          blk++;
          off = 0;
        }
      else
        emit_pending (&pe, false, fn, arg);
      pe = (struct pending){ true,
                             blk,
                             off,
                             len,
                             nl,
                             k        ? k->name
                             : i == 0 ? "."
                                      : "..",
                             k        ? k->ino
                             : i == 0 ? d->ino
                                      : d->parent_ino,
                             k ? k->type : EXT2_FT_DIR };
      off += len;
    }
  emit_pending (&pe, true, fn, arg);
  return blk + 1;
}

/* Blocks of the extent tree outside the inode for n data blocks. */
static uint64_t
extent_tree_blocks (uint64_t nblocks, int *depth)
{
  uint64_t extents = nblocks / MAX_EXTENT_LEN + (nblocks % MAX_EXTENT_LEN != 0);
  uint64_t leaves, idx;

  *depth = 0;
  if (extents <= 4)
    return 0;
  leaves = (extents + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK;
  *depth = 1;
  if (leaves <= 4)
    return leaves;
  idx = (leaves + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK;
  *depth = 2;
  if (idx <= 4)
    return leaves + idx;
  *depth = 3; /* beyond 2^48 bytes: not an S3 object */
  return 0;
}

/* ---- Layout ---- */

static int
set_params (struct builder *b, struct ext2_super_block *param, uint64_t blocks,
            uint64_t inodes)
{
  uint64_t groups = (blocks + 32767) / 32768;
  unsigned log_flex = 0;

  memset (param, 0, sizeof *param);
  param->s_rev_level = EXT2_DYNAMIC_REV;
  param->s_log_block_size = 2; /* 4 KiB */
  param->s_inode_size = INODE_SIZE;
  param->s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  ext2fs_set_feature_64bit (param);
  ext2fs_blocks_count_set (param, blocks);
  if (inodes > UINT32_MAX)
    return s3bd_fail (b->err, S3BD_EINVAL,
                      "%" PRIu64 " inodes: ext4 holds at most 2^32", inodes);
  param->s_inodes_count = (uint32_t)inodes;
  ext2fs_set_feature_extents (param);
  ext2fs_set_feature_flex_bg (param);
  ext2fs_set_feature_filetype (param);
  ext2fs_set_feature_dir_index (param);
  ext2fs_set_feature_sparse_super2 (param);
  ext2fs_set_feature_large_file (param);
  ext2fs_set_feature_huge_file (param);
  ext2fs_set_feature_dir_nlink (param);
  ext2fs_set_feature_extra_isize (param);
  /* One flex group for the whole file system packs all bitmaps and inode
   * tables at the front.
   */
  while (log_flex < 31 && ((uint64_t)1 << log_flex) < groups)
    log_flex++;
  param->s_log_groups_per_flex = (uint8_t)(log_flex ? log_flex : 1);
  param->s_backup_bgs[0] = param->s_backup_bgs[1] = 0;
  param->s_min_extra_isize = EXTRA_ISIZE;
  param->s_want_extra_isize = EXTRA_ISIZE;
  return 0;
}

static int
reserve (struct builder *b, uint64_t start, uint64_t count)
{
  /* ext2fs_block_alloc_stats_range takes a 32-bit count. */
  while (count)
    {
      unsigned n = count > (1u << 30) ? 1u << 30 : (unsigned)count;

      ext2fs_block_alloc_stats_range (b->fs, start, n, +1);
      start += n;
      count -= n;
    }
  return 0;
}

/* Lays out the file system; on return b->fs is open, each directory has
 * its blocks, and the extent-tree and data regions are placed.
 */
static int
layout (struct builder *b, uint64_t inodes, uint64_t *ext_start,
        uint64_t *data_start)
{
  uint64_t meta = b->dir_blocks + b->extent_blocks;
  uint64_t slack = DATA_ALIGN + 1024;
  struct ext2_super_block param;
  errcode_t e;

  for (int attempt = 0; attempt < 8; attempt++)
    {
      uint64_t blocks = b->data_blocks + meta + slack, groups;
      blk64_t first_free, probe;
      uint64_t start, have;

      /* Plus the group tables: 2 bitmaps a group, inode tables (with
       * room for rounding per group), descriptors, the superblock.
       */
      groups = blocks / 32768 + 1;
      blocks += 2 * groups + (inodes + groups * 16) * INODE_SIZE / BS
                + groups * EXT2_MIN_DESC_SIZE_64BIT / BS + 2;
      if (blocks > ((uint64_t)1 << 48))
        return s3bd_fail (b->err, S3BD_EINVAL,
                          "the image would need %" PRIu64
                          " blocks; ext4 holds at most 2^48",
                          blocks);
      if (set_params (b, &param, blocks, inodes) == -1)
        return -1;
      if (b->fs)
        ext2fs_free (b->fs);
      b->fs = NULL;
      e = ext2fs_initialize (memstore_name (b->store), EXT2_FLAG_64BITS, &param,
                             memstore_io_manager (), &b->fs);
      if (e)
        return fail_ext2 (b, e, "ext2fs_initialize");
      e = ext2fs_allocate_tables (b->fs);
      if (e)
        return fail_ext2 (b, e, "allocating group tables");
      have = ext2fs_blocks_count (b->fs->super);
      /* Past the last group table: flex_bg may leave free gaps between
       * the tables, but the regions placed here must be contiguous.
       */
      first_free = b->fs->super->s_first_data_block + 1;
      for (dgrp_t g = 0; g < b->fs->group_desc_count; g++)
        {
          blk64_t ends[3] = {
            ext2fs_block_bitmap_loc (b->fs, g) + 1,
            ext2fs_inode_bitmap_loc (b->fs, g) + 1,
            ext2fs_inode_table_loc (b->fs, g) + b->fs->inode_blocks_per_group,
          };

          for (int k = 0; k < 3; k++)
            if (ends[k] > first_free)
              first_free = ends[k];
        }
      e = ext2fs_find_first_set_block_bitmap2 (b->fs->block_map, first_free,
                                               have - 1, &probe);
      if (e != ENOENT)
        return s3bd_fail (b->err, S3BD_EINVAL,
                          "building the ext4 image: "
                          "used blocks after the group tables");
      start = (first_free + meta + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
      if (start + b->data_blocks <= have)
        {
          uint64_t dblk = first_free;

          for (size_t i = 0; i < b->dirs.len; i++)
            {
              b->dirs.ptr[i].first_block = dblk;
              dblk += b->dirs.ptr[i].nblocks;
            }
          *ext_start = first_free + b->dir_blocks;
          *data_start = start;
          return 0;
        }
      /* Too small (the estimate was short, or libext2fs trimmed a short
       * last group): grow by the shortfall and a group, and redo.
       */
      slack += start + b->data_blocks - have + 32768;
    }
  return s3bd_fail (b->err, S3BD_EINVAL, "could not lay out the image");
}

/* ---- Writing ---- */

static void
put_time (uint32_t *lo, uint32_t *extra, int64_t sec, uint32_t nsec)
{
  /* Low 32 bits of the seconds, signed; the extra field holds two more
   * epoch bits and the nanoseconds.
   */
  *lo = (uint32_t)sec;
  *extra = ((uint32_t)((sec - (int64_t)(int32_t)*lo) >> 32) & 3) | (nsec << 2);
}

struct extent_ctx
{
  struct builder *b;
  uint64_t next_tree_block; /* the extent-tree region */
};

/* Writes the extent tree for [pblk, pblk + nblocks) into the inode and,
 * for more than 4 extents, into tree blocks taken from ctx.
 */
static int
write_extents (struct extent_ctx *ctx, struct ext2_inode_large *ino,
               uint64_t pblk, uint64_t nblocks, uint64_t *tree_blocks)
{
  struct ext3_extent_header *h = (struct ext3_extent_header *)ino->i_block;
  uint64_t extents = nblocks / MAX_EXTENT_LEN + (nblocks % MAX_EXTENT_LEN != 0);
  int depth;
  uint64_t nleaves, nidx;
  unsigned char blk[BS];
  errcode_t e;

  *tree_blocks = extent_tree_blocks (nblocks, &depth);
  memset (ino->i_block, 0, sizeof ino->i_block);
  h->eh_magic = EXT3_EXT_MAGIC;
  h->eh_max = 4;
  if (depth == 0)
    {
      struct ext3_extent *x = (struct ext3_extent *)(h + 1);

      h->eh_entries = (uint16_t)extents;
      for (uint64_t i = 0; i < extents; i++)
        {
          uint64_t l = nblocks - i * MAX_EXTENT_LEN;

          x[i].ee_block = (uint32_t)(i * MAX_EXTENT_LEN);
          x[i].ee_len = (uint16_t)(l > MAX_EXTENT_LEN ? MAX_EXTENT_LEN : l);
          x[i].ee_start = (uint32_t)(pblk + i * MAX_EXTENT_LEN);
          x[i].ee_start_hi = (uint16_t)((pblk + i * MAX_EXTENT_LEN) >> 32);
        }
      return 0;
    }
  if (depth > 2)
    return s3bd_fail (ctx->b->err, S3BD_EINVAL,
                      "a file of %" PRIu64 " blocks is too large", nblocks);

  /* Leaves first, contiguous, then the index blocks of depth 2. */
  nleaves = (extents + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK;
  nidx = depth == 2 ? (nleaves + EXTENTS_PER_BLOCK - 1) / EXTENTS_PER_BLOCK : 0;
  uint64_t leaf0 = ctx->next_tree_block;
  uint64_t idx0 = leaf0 + nleaves;

  for (uint64_t L = 0; L < nleaves; L++)
    {
      struct ext3_extent_header *lh = (struct ext3_extent_header *)blk;
      struct ext3_extent *x = (struct ext3_extent *)(lh + 1);
      uint64_t first = L * EXTENTS_PER_BLOCK;
      uint64_t n = extents - first < EXTENTS_PER_BLOCK ? extents - first
                                                       : EXTENTS_PER_BLOCK;

      memset (blk, 0, BS);
      lh->eh_magic = EXT3_EXT_MAGIC;
      lh->eh_entries = (uint16_t)n;
      lh->eh_max = EXTENTS_PER_BLOCK;
      for (uint64_t i = 0; i < n; i++)
        {
          uint64_t ext = first + i;
          uint64_t l = nblocks - ext * MAX_EXTENT_LEN;

          x[i].ee_block = (uint32_t)(ext * MAX_EXTENT_LEN);
          x[i].ee_len = (uint16_t)(l > MAX_EXTENT_LEN ? MAX_EXTENT_LEN : l);
          x[i].ee_start = (uint32_t)(pblk + ext * MAX_EXTENT_LEN);
          x[i].ee_start_hi = (uint16_t)((pblk + ext * MAX_EXTENT_LEN) >> 32);
        }
      e = io_channel_write_blk64 (ctx->b->fs->io, leaf0 + L, 1, blk);
      if (e)
        return fail_ext2 (ctx->b, e, "writing an extent leaf");
    }
  /* An index entry: the first logical block under it, and its block. */
  {
    uint64_t nchildren = depth == 1 ? nleaves : nidx;
    uint64_t child0 = depth == 1 ? leaf0 : idx0;
    uint64_t span = (uint64_t)MAX_EXTENT_LEN * EXTENTS_PER_BLOCK
                    * (depth == 1 ? 1 : EXTENTS_PER_BLOCK);
    struct ext3_extent_idx *ix = (struct ext3_extent_idx *)(h + 1);

    if (depth == 2)
      for (uint64_t I = 0; I < nidx; I++)
        {
          struct ext3_extent_header *ih = (struct ext3_extent_header *)blk;
          struct ext3_extent_idx *y = (struct ext3_extent_idx *)(ih + 1);
          uint64_t first = I * EXTENTS_PER_BLOCK;
          uint64_t n = nleaves - first < EXTENTS_PER_BLOCK ? nleaves - first
                                                           : EXTENTS_PER_BLOCK;

          memset (blk, 0, BS);
          ih->eh_magic = EXT3_EXT_MAGIC;
          ih->eh_entries = (uint16_t)n;
          ih->eh_max = EXTENTS_PER_BLOCK;
          ih->eh_depth = 1;
          for (uint64_t i = 0; i < n; i++)
            {
              uint64_t leaf = first + i;

              y[i].ei_block
                  = (uint32_t)(leaf * EXTENTS_PER_BLOCK * MAX_EXTENT_LEN);
              y[i].ei_leaf = (uint32_t)(leaf0 + leaf);
              y[i].ei_leaf_hi = (uint16_t)((leaf0 + leaf) >> 32);
            }
          e = io_channel_write_blk64 (ctx->b->fs->io, idx0 + I, 1, blk);
          if (e)
            return fail_ext2 (ctx->b, e, "writing an extent index");
        }
    h->eh_depth = (uint16_t)depth;
    h->eh_entries = (uint16_t)nchildren;
    for (uint64_t i = 0; i < nchildren; i++)
      {
        ix[i].ei_block = (uint32_t)(i * span);
        ix[i].ei_leaf = (uint32_t)(child0 + i);
        ix[i].ei_leaf_hi = (uint16_t)((child0 + i) >> 32);
      }
  }
  ctx->next_tree_block += *tree_blocks;
  return 0;
}

static void
set_owner (struct ext2_inode_large *ino, const struct ext4_params *p)
{
  ino->i_uid = (uint16_t)p->uid;
  ino->osd2.linux2.l_i_uid_high = (uint16_t)(p->uid >> 16);
  ino->i_gid = (uint16_t)p->gid;
  ino->osd2.linux2.l_i_gid_high = (uint16_t)(p->gid >> 16);
}

static void
set_times (struct ext2_inode_large *ino, int64_t sec, uint32_t nsec)
{
  put_time (&ino->i_mtime, &ino->i_mtime_extra, sec, nsec);
  put_time (&ino->i_atime, &ino->i_atime_extra, sec, nsec);
  put_time (&ino->i_ctime, &ino->i_ctime_extra, sec, nsec);
  put_time (&ino->i_crtime, &ino->i_crtime_extra, sec, nsec);
}

static void
set_blocks (struct ext2_inode_large *ino, uint64_t fs_blocks)
{
  uint64_t sectors = fs_blocks * (BS / 512);

  ino->i_blocks = (uint32_t)sectors;
  ino->osd2.linux2.l_i_blocks_hi = (uint16_t)(sectors >> 32);
}

/* Inode table writing: inodes are composed into their group's table in
 * memory and each table block is written once.
 */
struct itable
{
  struct builder *b;
  dgrp_t group;       /* group whose table is in buf */
  unsigned char *buf; /* inodes_per_group * INODE_SIZE */
  uint32_t lo, hi;    /* used inode range in buf, 1-based */
};

static int
itable_flush (struct itable *t)
{
  ext2_filsys fs = t->b->fs;
  uint32_t ipg = fs->super->s_inodes_per_group;
  uint32_t per_block = BS / INODE_SIZE;
  uint64_t first, last;
  errcode_t e;

  if (t->hi == 0)
    return 0;
  first = (t->lo - 1) / per_block;
  last = (t->hi - 1) / per_block;
  e = io_channel_write_blk64 (fs->io,
                              ext2fs_inode_table_loc (fs, t->group) + first,
                              (int)(last - first + 1), t->buf + first * BS);
  if (e)
    return fail_ext2 (t->b, e, "writing an inode table");
  memset (t->buf, 0, (size_t)ipg * INODE_SIZE);
  t->lo = t->hi = 0;
  return 0;
}

/* Inodes must be put in increasing order. */
static int
itable_put (struct itable *t, ext2_ino_t ino,
            const struct ext2_inode_large *inode, bool dir)
{
  ext2_filsys fs = t->b->fs;
  uint32_t ipg = fs->super->s_inodes_per_group;
  dgrp_t g = (ino - 1) / ipg;
  uint32_t idx = (ino - 1) % ipg + 1;

  if (g != t->group && itable_flush (t) == -1)
    return -1;
  t->group = g;
  memcpy (t->buf + (size_t)(idx - 1) * INODE_SIZE, inode, sizeof *inode);
  if (t->lo == 0)
    t->lo = idx;
  t->hi = idx;
  ext2fs_inode_alloc_stats2 (fs, ino, +1, dir);
  return 0;
}

static void
emit_entry (void *arg, uint64_t blk, size_t off, size_t len, const char *name,
            size_t namelen, uint32_t ino, uint8_t type)
{
  unsigned char *p = (unsigned char *)arg + blk * BS + off;
  struct ext2_dir_entry_2 *de = (struct ext2_dir_entry_2 *)p;

  de->inode = ino;
  de->rec_len = (uint16_t)len;
  de->name_len = (uint8_t)namelen;
  de->file_type = type;
  memcpy (de->name, name, namelen);
}

static int
write_dirs (struct builder *b, struct itable *t)
{
  const struct ext4_params *p = b->p;
  unsigned char *buf = NULL;
  size_t cap = 0;
  uint32_t *order = NULL;
  int ret = -1;

  /* Inodes in increasing order: root (2) and lost+found (11) first, then
   * the rest, which got their numbers in path order.
   */
  order = calloc (b->dirs.len, sizeof *order);
  if (order == NULL)
    return s3bd_fail (b->err, S3BD_ENOMEM, "out of memory");
  for (size_t i = 0; i < b->dirs.len; i++)
    order[b->dirs.ptr[i].ino == EXT2_ROOT_INO ? 0
          : b->dirs.ptr[i].ino == LOST_FOUND_INO
              ? 1
              : b->dirs.ptr[i].ino - FIRST_DIR_INO + 2]
        = (uint32_t)i;
  for (size_t k = 0; k < b->dirs.len; k++)
    {
      const struct dir *d = &b->dirs.ptr[order[k]];
      struct ext2_inode_large ino;
      uint64_t tree = 0;
      errcode_t e;
      struct extent_ctx none = { b, 0 };

      if (d->nblocks * BS > cap)
        {
          unsigned char *nb = d->nblocks > SIZE_MAX / BS
                                  ? NULL
                                  : realloc (buf, d->nblocks * BS);

          if (nb == NULL)
            {
              s3bd_fail (b->err, S3BD_ENOMEM, "out of memory");
              goto out;
            }
          buf = nb;
          cap = d->nblocks * BS;
        }
      memset (buf, 0, d->nblocks * BS);
      dir_layout (d, emit_entry, buf);
      e = io_channel_write_blk64 (b->fs->io, d->first_block, (int)d->nblocks,
                                  buf);
      if (e)
        {
          fail_ext2 (b, e, "writing a directory");
          goto out;
        }
      reserve (b, d->first_block, d->nblocks);

      memset (&ino, 0, sizeof ino);
      ino.i_mode
          = LINUX_S_IFDIR | (d->ino == LOST_FOUND_INO ? 0700 : p->dir_mode);
      set_owner (&ino, p);
      if (d->ino == LOST_FOUND_INO)
        ino.i_uid = ino.i_gid = ino.osd2.linux2.l_i_uid_high
            = ino.osd2.linux2.l_i_gid_high = 0;
      ino.i_size = (uint32_t)(d->nblocks * BS);
      ino.i_size_high = (uint32_t)((d->nblocks * BS) >> 32);
      set_times (&ino, p->time, 0);
      /* dir_nlink: a link count past the limit (not at it: the kernel
       * and e2fsck count up to EXT2_LINK_MAX) is written as 1.
       */
      ino.i_links_count
          = d->nsubdirs + 2 > EXT2_LINK_MAX ? 1 : (uint16_t)(d->nsubdirs + 2);
      ino.i_flags = EXT4_EXTENTS_FL;
      ino.i_extra_isize = EXTRA_ISIZE;
      if (write_extents (&none, &ino, d->first_block, d->nblocks, &tree) == -1)
        goto out;
      if (tree)
        {
          s3bd_fail (b->err, S3BD_EINVAL,
                     "directory '/%.*s' is too large "
                     "(%" PRIu64 " blocks)",
                     (int)d->len, d->path, d->nblocks);
          goto out;
        }
      set_blocks (&ino, d->nblocks);
      if (itable_put (t, d->ino, &ino, true) == -1)
        goto out;
    }
  ret = 0;

out:
  free (order);
  free (buf);
  return ret;
}

static int
write_files (struct builder *b, struct itable *t, uint64_t ext_start,
             uint64_t data_start)
{
  const struct ext4_params *p = b->p;
  struct extent_ctx ctx = { b, ext_start };
  uint64_t next = data_start;

  for (size_t i = 0; i < b->nfiles; i++)
    {
      struct ext4_file *f = &b->files[i];
      uint64_t nb = blocks_of (f->size), tree = 0;
      struct ext2_inode_large ino;

      memset (&ino, 0, sizeof ino);
      ino.i_mode = LINUX_S_IFREG | p->file_mode;
      set_owner (&ino, p);
      ino.i_size = (uint32_t)f->size;
      ino.i_size_high = (uint32_t)(f->size >> 32);
      set_times (&ino, f->mtime, f->mtime_nsec);
      ino.i_links_count = 1;
      ino.i_flags = EXT4_EXTENTS_FL;
      ino.i_extra_isize = EXTRA_ISIZE;
      f->first_block = next;
      if (write_extents (&ctx, &ino, next, nb, &tree) == -1)
        return -1;
      if (tree)
        reserve (b, ctx.next_tree_block - tree, tree);
      set_blocks (&ino, nb + tree);
      if (itable_put (t, b->file_ino[i], &ino, false) == -1)
        return -1;
      next += nb;
    }
  return reserve (b, data_start, next - data_start);
}

int
ext4_build (const struct ext4_params *p, struct ext4_file *files, size_t nfiles,
            const char *const *dirs, size_t ndirs, struct ext4_image *out,
            struct s3bd_error *err)
{
  struct builder b = { .p = p, .files = files, .nfiles = nfiles, .err = err };
  struct itable t = { .b = &b };
  uint64_t inodes, ext_start = 0, data_start = 0;
  errcode_t e;
  int ret = -1;

  memset (out, 0, sizeof *out);
  b.file_ino = calloc (nfiles ? nfiles : 1, sizeof *b.file_ino);
  b.store = memstore_new ();
  if (b.file_ino == NULL || b.store == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  if (build_tree (&b, dirs, ndirs) == -1)
    goto out;

  for (size_t i = 0; i < b.dirs.len; i++)
    {
      b.dirs.ptr[i].nblocks = dir_layout (&b.dirs.ptr[i], NULL, NULL);
      b.dir_blocks += b.dirs.ptr[i].nblocks;
    }
  for (size_t i = 0; i < nfiles; i++)
    {
      int depth;
      uint64_t nb = blocks_of (files[i].size);

      b.data_blocks += nb;
      b.extent_blocks += extent_tree_blocks (nb, &depth);
      if (depth > 2)
        {
          s3bd_fail (err, S3BD_EINVAL,
                     "%s: %" PRIu64 " bytes is too large "
                     "for one file",
                     files[i].path, files[i].size);
          goto out;
        }
    }
  inodes = (uint64_t)FIRST_DIR_INO + (b.dirs.len - 2) + nfiles;
  if (layout (&b, inodes, &ext_start, &data_start) == -1)
    goto out;

  /* Deterministic identity and times. */
  memcpy (b.fs->super->s_uuid, p->uuid, sizeof b.fs->super->s_uuid);
  memcpy (b.fs->super->s_hash_seed, p->hash_seed,
          sizeof b.fs->super->s_hash_seed);
  memcpy (b.fs->super->s_volume_name, p->label,
          sizeof b.fs->super->s_volume_name);
  b.fs->super->s_def_hash_version = EXT2_HASH_HALF_MD4;
  b.fs->super->s_mkfs_time = b.fs->super->s_wtime = b.fs->super->s_mtime
      = b.fs->super->s_lastcheck = (uint32_t)p->time;
  b.fs->super->s_max_mnt_count = (uint16_t)-1;
  b.fs->super->s_checkinterval = 0;
  b.fs->super->s_kbytes_written = 0;
  b.fs->now = (time_t)p->time;

  t.buf = calloc (b.fs->super->s_inodes_per_group, INODE_SIZE);
  if (t.buf == NULL)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  if (write_dirs (&b, &t) == -1
      || write_files (&b, &t, ext_start, data_start) == -1
      || itable_flush (&t) == -1)
    goto out;
  /* Inodes 1-10 are reserved and counted as used. */
  for (ext2_ino_t i = 1; i < LOST_FOUND_INO; i++)
    if (i != EXT2_ROOT_INO)
      ext2fs_inode_alloc_stats2 (b.fs, i, +1, 0);

  out->blocks_count = ext2fs_blocks_count (b.fs->super);
  out->data_start = data_start;
  out->data_blocks = b.data_blocks;
  out->inodes = inodes - 1;
  out->dirs = b.dirs.len;
  ext2fs_mark_super_dirty (b.fs);
  ext2fs_mark_bb_dirty (b.fs);
  ext2fs_mark_ib_dirty (b.fs);
  e = ext2fs_close_free (&b.fs);
  if (e)
    {
      fail_ext2 (&b, e, "writing the superblock and bitmaps");
      goto out;
    }
  if (memstore_export (b.store, out) == -1)
    {
      s3bd_fail (err, S3BD_ENOMEM, "out of memory");
      goto out;
    }
  ret = 0;

out:
  if (b.fs)
    ext2fs_free (b.fs);
  memstore_free (b.store);
  for (size_t i = 0; i < b.dirs.len; i++)
    child_vector_free (&b.dirs.ptr[i].kids);
  dir_vector_free (&b.dirs);
  hashmap_free (&b.map);
  free (b.file_ino);
  free (t.buf);
  if (ret)
    ext4_image_free (out);
  return ret;
}

void
ext4_image_free (struct ext4_image *img)
{
  free (img->meta);
  free (img->content);
  img->meta = NULL;
  img->content = NULL;
  img->nmeta = img->ncontent = 0;
}
