/* s3bd-mkimage --materialize, --dump and --dump-records: looking inside
 * an index with the real tools.
 *
 * --materialize writes the image as a sparse file, so that e2fsck,
 * debugfs, dumpe2fs and a loop mount can check it.  --dump opens the
 * image's metadata with libext2fs, straight from the index (through the
 * in-memory block store), and prints for each file the object behind it.
 * Files get their inode numbers in path order, as the objects are stored,
 * so object i is inode first_file + i; dump checks that the inode's size
 * and first data block agree with the object, so it also proves the map.
 * --dump-records lists the Pipe records an augmented manifest left in
 * the index, line by line.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ext2fs/ext2fs.h>

#include "mkimage.h"
#include "s3bd/ext4.h"
#include "s3bd/index.h"

static int
load (const char *path, struct s3bd_index *idx)
{
  struct s3bd_error err = { 0 };

  if (index_read_file (path, idx, &err) == -1)
    {
      fprintf (stderr, "s3bd-mkimage: %s\n", err.msg);
      return -1;
    }
  return 0;
}

static const unsigned char *
run_block (const struct s3bd_index *idx, const struct index_meta_run *r,
           uint64_t i)
{
  return idx->content
         + (size_t)(r->repeated ? r->first : r->first + i) * idx->block_size;
}

int
materialize (const char *index_path, const char *image_path)
{
  struct s3bd_index idx = { 0 };
  size_t len = strlen (image_path) + 16;
  char *tmp = malloc (len);
  int fd = -1, ret = 1;

  if (tmp == NULL || load (index_path, &idx) == -1)
    goto out;
  snprintf (tmp, len, "%s.tmp.XXXXXX", image_path);
  if ((fd = mkstemp (tmp)) == -1)
    {
      fprintf (stderr, "s3bd-mkimage: %s: %s\n", image_path, strerror (errno));
      goto out;
    }
  if (ftruncate (fd, (off_t)(idx.device_blocks * idx.block_size)) == -1)
    {
      fprintf (
          stderr,
          "s3bd-mkimage: %s: cannot make a %" PRIu64 "-byte sparse file: %s\n",
          image_path, idx.device_blocks * idx.block_size, strerror (errno));
      goto fail;
    }
  for (uint64_t r = 0; r < idx.nruns; r++)
    for (uint64_t i = 0; i < idx.runs[r].count; i++)
      if (pwrite (fd, run_block (&idx, &idx.runs[r], i), idx.block_size,
                  (off_t)((idx.runs[r].block + i) * idx.block_size))
          != (ssize_t)idx.block_size)
        {
          fprintf (stderr, "s3bd-mkimage: %s: %s\n", image_path,
                   strerror (errno));
          goto fail;
        }
  if (fsync (fd) == -1 || close (fd) == -1)
    {
      fd = -1;
      fprintf (stderr, "s3bd-mkimage: %s: %s\n", image_path, strerror (errno));
      goto fail;
    }
  fd = -1;
  if (rename (tmp, image_path) == -1)
    {
      fprintf (stderr, "s3bd-mkimage: %s: %s\n", image_path, strerror (errno));
      goto fail;
    }
  ret = 0;
  goto out;

fail:
  if (fd != -1)
    close (fd);
  unlink (tmp);
out:
  free (tmp);
  index_free (&idx);
  return ret;
}

struct walk
{
  ext2_filsys fs;
  const struct s3bd_index *idx;
  ext2_ino_t first_file;
  char path[8192];
  size_t len;
  int bad;
};

static int
print_file (struct walk *w, ext2_ino_t ino, const char *path)
{
  const struct s3bd_index *idx = w->idx;
  struct ext2_inode_large inode;
  const struct index_object *o;
  blk64_t pblk = 0;
  uint64_t size;
  errcode_t e;

  if (ino < w->first_file || ino - w->first_file >= idx->nobjects)
    {
      fprintf (stderr, "s3bd-mkimage: %s: inode %u has no object\n", path, ino);
      w->bad = 1;
      return -1;
    }
  o = &idx->objects[ino - w->first_file];
  e = ext2fs_read_inode_full (w->fs, ino, (struct ext2_inode *)&inode,
                              sizeof inode);
  if (e == 0 && o->size)
    e = ext2fs_bmap2 (w->fs, ino, (struct ext2_inode *)&inode, NULL, 0, 0, NULL,
                      &pblk);
  size = EXT2_I_SIZE (&inode);
  if (e || size != o->size || (o->size && pblk != o->first_block))
    {
      fprintf (stderr,
               "s3bd-mkimage: %s: the inode and object %s "
               "disagree (corrupt index)\n",
               path, o->key);
      w->bad = 1;
      return -1;
    }
  printf ("%s\ts3://%s/%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n", path,
          idx->buckets[o->bucket], o->key, o->etag, o->size, o->first_block,
          (o->size + idx->block_size - 1) / idx->block_size);
  return 0;
}

static int
walk_entry (ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int off,
            int blocksize, char *buf, void *arg)
{
  struct walk *w = arg;
  int nl = ext2fs_dirent_name_len (de);
  size_t saved = w->len;

  if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE)
    return 0;
  if (saved + (size_t)nl + 2 > sizeof w->path)
    {
      w->bad = 1;
      return DIRENT_ABORT;
    }
  if (saved)
    w->path[w->len++] = '/';
  memcpy (w->path + w->len, de->name, (size_t)nl);
  w->len += (size_t)nl;
  w->path[w->len] = '\0';
  if (ext2fs_dirent_file_type (de) == EXT2_FT_DIR)
    {
      if (de->inode != EXT2_ROOT_INO && strcmp (w->path, "lost+found"))
        ext2fs_dir_iterate2 (w->fs, de->inode, 0, NULL, walk_entry, w);
    }
  else
    print_file (w, de->inode, w->path);
  w->len = saved;
  w->path[w->len] = '\0';
  return w->bad ? DIRENT_ABORT : 0;
}

int
dump (const char *index_path, const char *const *paths, size_t npaths)
{
  struct s3bd_index idx = { 0 };
  struct memstore *store = NULL;
  struct walk w = { 0 };
  ext2_filsys fs = NULL;
  errcode_t e;
  uint64_t used;
  int ret = 1;

  if (load (index_path, &idx) == -1)
    return 1;
  if ((store = memstore_new ()) == NULL)
    goto nomem;
  for (uint64_t r = 0; r < idx.nruns; r++)
    for (uint64_t i = 0; i < idx.runs[r].count; i++)
      if (memstore_put (store, idx.runs[r].block + i,
                        run_block (&idx, &idx.runs[r], i))
          == -1)
        goto nomem;
  e = ext2fs_open (memstore_name (store), EXT2_FLAG_64BITS, 0, 0,
                   memstore_io_manager (), &fs);
  if (e)
    {
      fprintf (stderr, "s3bd-mkimage: %s: the image does not open: %s\n",
               index_path, error_message (e));
      goto out;
    }
  /* Used inodes are 1..used: reserved, lost+found, directories, files. */
  used = fs->super->s_inodes_count - fs->super->s_free_inodes_count;
  w = (struct walk){ .fs = fs,
                     .idx = &idx,
                     .first_file = (ext2_ino_t)(used - idx.nobjects + 1) };
  if (npaths == 0)
    ext2fs_dir_iterate2 (fs, EXT2_ROOT_INO, 0, NULL, walk_entry, &w);
  for (size_t i = 0; i < npaths; i++)
    {
      ext2_ino_t ino;
      const char *p = paths[i];

      while (*p == '/')
        p++;
      e = ext2fs_namei (fs, EXT2_ROOT_INO, EXT2_ROOT_INO, p, &ino);
      if (e)
        {
          fprintf (stderr, "s3bd-mkimage: %s: not in the image\n", paths[i]);
          w.bad = 1;
          continue;
        }
      print_file (&w, ino, p);
    }
  ret = w.bad;
  goto out;

nomem:
  fprintf (stderr, "s3bd-mkimage: out of memory\n");
out:
  if (fs)
    ext2fs_close_free (&fs);
  memstore_free (store);
  index_free (&idx);
  return ret;
}

int
dump_records (const char *index_path)
{
  struct s3bd_index idx = { 0 };
  uint64_t line = 0, rec = 0;

  if (load (index_path, &idx) == -1)
    return 1;
  if (idx.nrecords == 0)
    fprintf (stderr,
             "s3bd-mkimage: %s: no augmented-manifest records: in Pipe mode "
             "each of its %" PRIu64 " objects is a record of its own\n",
             index_path, idx.nobjects);
  for (uint64_t i = 0; i < idx.nrecords; i++)
    {
      const struct index_record *r = &idx.records[i];

      if (r->first && i > 0)
        line++, rec = 0;
      if (r->object == INDEX_RECORD_INLINE)
        printf ("%" PRIu64 "\t%" PRIu64 "\tinline\t%.*s\n", line, rec,
                (int)r->len, r->text);
      else
        {
          const struct index_object *o = &idx.objects[r->object];

          printf ("%" PRIu64 "\t%" PRIu64 "\tobject\ts3://%s/%s\t%" PRIu64 "\n",
                  line, rec, idx.buckets[o->bucket], o->key, o->size);
        }
      rec++;
    }
  index_free (&idx);
  return 0;
}
