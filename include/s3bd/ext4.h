/* s3bd: the ext4 image builder.
 *
 * Builds the metadata of a read-only ext4 file system whose files are a
 * dataset's objects, with libext2fs laying out the superblock, group
 * descriptors, bitmaps and inode tables, and s3bd writing inodes,
 * directories and extent trees itself (it knows every file up front, so
 * it can write each block once).  Layout: 4 KiB blocks; all metadata at
 * the front (flex_bg packs every group's bitmaps and inode tables there);
 * then the data region, where each file's data is contiguous, in the
 * order of the files given (sorted by path), starting on a block
 * boundary.  No data block is ever written: the image holds metadata
 * only, kept in memory with identical blocks stored once.
 *
 * Features: 64bit, extents, flex_bg, sparse_super2 with no backups,
 * dir_index, filetype, huge_file, dir_nlink, extra_isize, large_file; no
 * journal, no resize inode, no metadata_csum (it triples build time and
 * buys nothing for an image that never changes).
 */
#ifndef S3BD_EXT4_H
#define S3BD_EXT4_H

#include <stddef.h>
#include <stdint.h>

#include "s3bd/error.h"

#define EXT4_BLOCK_SIZE 4096

struct ext4_file
{
  const char *path; /* relative, valid (see dataset.h), sorted */
  uint64_t size;
  int64_t mtime;
  uint32_t mtime_nsec;
  uint64_t first_block; /* out: device block of its data */
};

struct ext4_params
{
  uint32_t uid, gid;
  uint16_t file_mode; /* permission bits, e.g. 0444 */
  uint16_t dir_mode;  /* e.g. 0555 */
  int64_t time;       /* directories' times and the superblock's */
  unsigned char uuid[16];
  uint32_t hash_seed[4];
  char label[16]; /* NUL-padded */
};

/* One metadata block of the image: device block -> unique content. */
struct ext4_meta_block
{
  uint64_t block;
  uint32_t content;
};

struct ext4_image
{
  uint64_t blocks_count;
  uint64_t data_start; /* first block of the data region */
  uint64_t data_blocks;
  struct ext4_meta_block *meta; /* sorted by block; zero blocks absent */
  size_t nmeta;
  unsigned char *content; /* ncontent blocks, EXT4_BLOCK_SIZE each */
  size_t ncontent;
  uint64_t inodes; /* used */
  uint64_t dirs;
};

/* Builds the image for files (sorted by path, paths valid) and explicit
 * directories (sorted; parents of files need not be listed).  Fills each
 * file's first_block.
 */
int ext4_build (const struct ext4_params *p, struct ext4_file *files,
                size_t nfiles, const char *const *dirs, size_t ndirs,
                struct ext4_image *out, struct s3bd_error *err);

void ext4_image_free (struct ext4_image *img);

/* ---- The in-memory block store behind the builder (ext4io.c) ---- */

struct memstore;

struct memstore *memstore_new (void);
void memstore_free (struct memstore *s);
/* The libext2fs io_manager that reads and writes the store; open it with
 * the name memstore_name() returns.
 */
void *memstore_io_manager (void);
const char *memstore_name (struct memstore *s);
/* Stores one block (EXT4_BLOCK_SIZE bytes): for reading an image back
 * with libext2fs.  Returns 0 or -1 (ENOMEM).
 */
int memstore_put (struct memstore *s, uint64_t block, const void *data);
/* Moves the store's blocks into img->meta/content: sorted by block,
 * contents numbered in order of first use.  Returns 0 or -1 (ENOMEM).
 */
int memstore_export (struct memstore *s, struct ext4_image *img);

#endif
